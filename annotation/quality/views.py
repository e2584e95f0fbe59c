"""The Quality page: agreement and each annotator's figures, per batch, for admins.

Needs the manage-batches permission: annotators and researchers get 403 (annotators never
see other annotators' labels), anonymous users are sent to log in.
"""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import Http404
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from annotation.domain import Category
from annotation.export import charts as export_charts
from annotation.models import Batch, Label
from annotation.permissions import MANAGE_BATCHES
from annotation.quality import charts, selectors
from annotation.quality.agreement import SIGNED_SCALE, SIGNED_SCALE_NAMES
from annotation.review.selectors import ReviewCounts, review_counts_by_batch

manager_required = permission_required(MANAGE_BATCHES, raise_exception=True)

# B's side in blues, A's in greens, "about the same" grey: the scale reads left to right.
SIGNED_COLORS = {
    -3: "#0d47a1",
    -2: "#1e88e5",
    -1: "#90caf9",
    0: "#e0e0e0",
    1: "#a5d6a7",
    2: "#43a047",
    3: "#1b5e20",
}
SIGNED_SHORT = {-3: "B signif.", 3: "A signif.", 0: "About the same"}
SIGNED_SERIES = [
    export_charts.Series(str(p), SIGNED_SHORT.get(p, SIGNED_SCALE_NAMES[p]), SIGNED_COLORS[p])
    for p in SIGNED_SCALE
]


def _batch_from_query(value: str | None) -> Batch | None:
    if value:
        if not value.isdigit():
            raise Http404("batch must be a batch id")
        try:
            return Batch.objects.get(pk=int(value))
        except Batch.DoesNotExist:
            raise Http404("No such batch.") from None
    latest = Label.objects.order_by("-id").values_list("comparison__batch_id", flat=True).first()
    return (
        Batch.objects.filter(pk=latest).first()
        if latest
        else Batch.objects.order_by("-created_at").first()
    )


@require_GET
@manager_required
def quality(request):
    batch = _batch_from_query(request.GET.get("batch"))
    context = {"batches": selectors.batch_list_for_quality()[:200], "batch": batch}
    if batch is not None:
        report = selectors.batch_quality(batch.pk)
        categories = []
        for category, agreement in report.by_category:
            raters = sorted({m.rater for m in agreement.majority if m.labels})
            categories.append(
                {
                    "name": Category(category).value,
                    "agreement": agreement,
                    "kappa_svg": mark_safe(  # built with html.escape (quality/charts.py)
                        charts.kappa_matrix_svg(
                            raters, list(agreement.kappas), title=f"Weighted κ, {category}"
                        )
                    ),
                    "kappas_defined": sum(k.kappa is not None for k in agreement.kappas),
                }
            )
        compared = sum(a.majority_compared for a in report.annotators)
        agreed = sum(a.majority_agreed for a in report.annotators)
        context.update(
            report=report,
            review=review_counts_by_batch(batch_ids=[batch.pk]).get(batch.pk, ReviewCounts()),
            categories=categories,
            majority_svg=mark_safe(
                charts.rate_bars_svg(
                    [
                        (a.name, a.majority_rate, f"of {a.majority_compared}")
                        for a in report.annotators
                    ],
                    title="Agreement with the majority of the others",
                    reference=agreed / compared if compared else None,
                )
            ),
            signed_svg=mark_safe(
                export_charts.stacked_bars_svg(
                    "Each annotator's labels on the signed scale",
                    [
                        (a.name, {str(k): v for k, v in report.signed_counts[a.name].items()})
                        for a in report.annotators
                    ],
                    SIGNED_SERIES,
                    width=760,
                )
            ),
        )
    return render(request, "quality/index.html", context)
