"""The reviewer's pages: batches to review, a batch's queue, one comparison and its verdict.

Every page needs the review permission (``annotation.review_labels``; admins have it):
annotators get 403, so they never see the queue nor other annotators' labels.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation.domain import STRENGTH_ORDER
from annotation.models import Batch
from annotation.permissions import REVIEW
from annotation.review import selectors, services
from annotation.review.forms import VerdictForm

reviewer_required = permission_required(REVIEW, raise_exception=True)
STATUSES = {"pending": "Needs review", "reviewed": "Reviewed", "all": "All"}


@require_GET
@reviewer_required
def review_index(request):
    return render(request, "review/index.html", {"rows": selectors.review_batch_list()})


@require_GET
@reviewer_required
def review_batch(request, batch_id: int):
    batch = get_object_or_404(Batch, pk=batch_id)
    reason = request.GET.get("reason") or None
    status = request.GET.get("status") or "pending"
    if reason is not None and reason not in selectors.QUEUE_REASONS:
        return HttpResponseBadRequest(
            f"reason: unknown value {reason!r}; one of {', '.join(selectors.QUEUE_REASONS)}.",
            content_type="text/plain",
        )
    if status not in STATUSES:
        return HttpResponseBadRequest(
            f"status: unknown value {status!r}; one of {', '.join(STATUSES)}.",
            content_type="text/plain",
        )
    queue = selectors.review_queue(batch=batch, reason=reason, status=status)
    page = Paginator(queue, 25).get_page(request.GET.get("page"))
    rows = [(c, selectors.queue_badges(c)) for c in page.object_list]
    counts = selectors.review_counts_by_batch(batch_ids=[batch.pk]).get(
        batch.pk, selectors.ReviewCounts()
    )
    context = {
        "batch": batch,
        "page": page,
        "rows": rows,
        "counts": counts,
        "reason": reason,
        "status": status,
        "reasons": selectors.REASON_LABELS,
        "statuses": STATUSES,
        "annotator_flags": selectors.annotator_flag_list(batch=batch),
        "reward_model_checks": selectors.reward_model_check_list(batch=batch),
    }
    return render(request, "review/batch.html", context)


@require_POST
@reviewer_required
def review_checks_run(request, batch_id: int):
    batch = get_object_or_404(Batch, pk=batch_id)
    try:
        report = services.review_flags_refresh(batch=batch)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Rule checks done: {report.summary()}")
    return redirect("review:batch", batch_id=batch.pk)


def _render_item(request, comparison_id: int, *, form=None, status=200):
    item = selectors.review_item_get(comparison_id=comparison_id)
    if item is None:
        raise Http404("No such comparison.")
    context = {
        "item": item,
        "batch": item.comparison.batch,
        "form": form or VerdictForm(),
        "is_safety": item.comparison.category == "safety",
        "strengths": [(s.value, s.label) for s in STRENGTH_ORDER],
        "frozen": item.comparison.batch.status == Batch.Status.FROZEN,
    }
    return render(request, "review/item.html", context, status=status)


@require_GET
@reviewer_required
def review_item(request, comparison_id: int):
    return _render_item(request, comparison_id)


@require_POST
@reviewer_required
def review_verdict(request, comparison_id: int):
    item = selectors.review_item_get(comparison_id=comparison_id)
    if item is None:
        raise Http404("No such comparison.")
    form = VerdictForm(request.POST)
    if form.is_valid():
        try:
            services.review_verdict_record(
                comparison=item.comparison, reviewer=request.user, **form.service_arguments()
            )
        except ValidationError as exc:
            for name, errors in exc.message_dict.items():
                name = "verdict" if name == "accepted_label" else name
                form.add_error(name if name in form.fields else None, errors)
    if form.errors:
        return _render_item(request, comparison_id, form=form, status=400)
    messages.success(request, f"Verdict on comparison {comparison_id} recorded.")
    following = selectors.review_next_pending(batch=item.comparison.batch, after_id=comparison_id)
    if following is None:
        return redirect("review:batch", batch_id=item.comparison.batch_id)
    return redirect(reverse("review:item", args=[following]))
