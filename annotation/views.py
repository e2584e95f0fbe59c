"""Pages of the annotation app. Views translate HTTP; services and selectors do the work.

The annotator page is one task at a time: ``annotate`` renders it, ``annotate_label`` and
``annotate_skip`` answer htmx with the next task's partial (or, without JavaScript, a
redirect back to ``annotate``). Validation problems come back as the same task with the
errors inline (422), a task that is gone as the next task with a notice (409); htmx is
told to swap both (see the ``htmx-config`` meta tag in base.html).

The page takes the API's path: the task comes from ``assignments.task_next`` and a label
goes through ``labels.label_submit_and_next``, which hands back the next task in the same
transaction, so a label from the page costs the statements the API's label-and-next does.
Another annotator's task answers exactly as one that is gone (409, the next task).
"""

from __future__ import annotations

import functools
import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation import auth, selectors, services
from annotation.domain import STRENGTH_ORDER, Category, SafetyTag
from annotation.forms import SKIP_REASONS, BatchCreateForm, ImportForm, LabelForm, SkipForm
from annotation.gold.selectors import annotator_pauses_for
from annotation.importers import ImportFileError, ImportTooLargeError
from annotation.models import CATEGORY_CHOICES, Batch
from annotation.permissions import ANNOTATE, MANAGE_BATCHES, user_roles
from annotation.queue import assignments, labels, reads


def annotator_required(view):
    """``permission_required(ANNOTATE)``, with the user's permissions read in one query
    (``auth.permissions_preload``), as the API's token statement does."""
    checked = permission_required(ANNOTATE, raise_exception=True)(view)

    @functools.wraps(view)
    def preloaded(request, *args, **kwargs):
        auth.permissions_preload(request.user)
        return checked(request, *args, **kwargs)

    return preloaded


manager_required = permission_required(MANAGE_BATCHES, raise_exception=True)

STRENGTH_KEYS = ["a", "s", "d", "f"]  # strongest first, as on the page
TASK_GONE = (
    "That task is no longer available: its batch was closed, or it expired and went back "
    "to the queue. Your answer was not saved."
)
TRANSITION_VERBS = {
    Batch.Status.OPEN: "Open for annotation",
    Batch.Status.CLOSED: "Close",
    Batch.Status.FROZEN: "Freeze",
}


def _add_service_errors(form, exc: ValidationError, *, renamed: dict | None = None) -> None:
    """Attach a service's ValidationError to the form: by field where the form has it
    (``renamed``: the service's name → the form's)."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.message_dict.items():
            name = (renamed or {}).get(name, name)
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


# --- home ------------------------------------------------------------------------------


@require_GET
def home(request):
    roles = user_roles(request.user)
    if roles["annotate"] and not roles["manage"]:
        return redirect("annotate")  # annotators go straight to work
    batches = (
        [(b, selectors.batch_progress(b)) for b in selectors.batch_list()[:6]]
        if roles["manage"]
        else []
    )
    return render(request, "home.html", {"batches": batches})


# --- the annotator page ----------------------------------------------------------------


CATEGORY_LABELS = dict(CATEGORY_CHOICES)


def _side(side: str, title: str, text: str, safety_field, *, keys: tuple[str, str, str]) -> dict:
    """One on-screen response: its position, title, text, safety field and shortcut keys."""
    choose_key, safe_key, unsafe_key = keys
    return {
        "side": side,
        "title": title,
        "text": text,
        "key": choose_key,
        "safety_field": safety_field,
        "safety_options": [
            (SafetyTag.SAFE.value, "Safe", safe_key),
            (SafetyTag.UNSAFE.value, "Unsafe", unsafe_key),
        ],
    }


def _task_context(request, task, *, form=None, skip_form=None, notice="", error=""):
    """The page's context for ``task`` (a ``reads.Task``, or None when the queue is empty)."""
    counts = task.counts if task is not None else reads.annotator_counts(request.user)
    total = counts.done + counts.remaining
    context = {
        "task": task,
        "counts": counts,
        "progress_pct": int(100 * counts.done / total) if total else 100,
        "notice": notice,
        "error": error,
        "skip_reasons": SKIP_REASONS,
    }
    if task is None:
        # Why the queue is empty, when it is because of a pause (never which labels).
        context["pauses"] = annotator_pauses_for(request.user)
        return context
    form = form or LabelForm()
    context.update(
        category_label=CATEGORY_LABELS.get(task.category, task.category),
        sides=[
            _side("left", "Response 1", task.left.text, form["safety_left"], keys=("1", "q", "w")),
            _side(
                "right", "Response 2", task.right.text, form["safety_right"], keys=("2", "o", "p")
            ),
        ],
        is_safety=task.category == Category.SAFETY,
        form=form,
        skip_form=skip_form or SkipForm(),
        strengths=list(zip(STRENGTH_ORDER, STRENGTH_KEYS, strict=True)),
        chosen_side=form["choice"].value() if form.is_bound else "",
        chosen_strength=form["strength"].value() if form.is_bound else "",
        idempotency_key=(form["idempotency_key"].value() if form.is_bound else "")
        or uuid.uuid4().hex,
    )
    return context


def _render_task(request, task, *, status=200, **kwargs):
    template = "annotation/_task.html" if request.htmx else "annotation/annotate.html"
    return render(request, template, _task_context(request, task, **kwargs), status=status)


def _render_gone(request):
    """The task is not among the user's own (expired, its batch closed, or another
    annotator's: one answer for all): the next task, with a notice."""
    task = assignments.task_next(annotator=request.user)
    return _render_task(request, task, error=TASK_GONE, status=409)


def _render_again(request, assignment_id: int, **kwargs):
    """The same task again, with the form's problems inline (or gone, if it is)."""
    task = reads.task_get(assignment_id=assignment_id, annotator=request.user)
    if task is None:
        return _render_gone(request)
    return _render_task(request, task, **kwargs)


@require_GET
@annotator_required
def annotate(request):
    return _render_task(request, assignments.task_next(annotator=request.user))


@require_POST
@annotator_required
def annotate_label(request, assignment_id: int):
    form = LabelForm(request.POST)
    if form.is_valid():
        try:
            _, _, task = labels.label_submit_and_next(
                assignment_id=assignment_id, annotator=request.user, data=form.label_input()
            )
        except assignments.AssignmentGone:
            return _render_gone(request)
        except ValidationError as exc:
            _add_service_errors(form, exc, renamed={"preferred_side": "choice"})
        except labels.IdempotencyKeyReused:
            form.add_error(None, "This form was already used to label another task; reload.")
    if form.errors:
        # Field problems are the annotator's to fix (422); the rest are the task's state (409).
        status = 409 if form.non_field_errors() else 422
        return _render_again(request, assignment_id, form=form, status=status)
    if not request.htmx:
        messages.success(request, "Label saved.")
        return redirect("annotate")
    return _render_task(request, task, notice="Label saved.")


@require_POST
@annotator_required
def annotate_skip(request, assignment_id: int):
    skip_form = SkipForm(request.POST)
    if skip_form.is_valid():
        try:
            assignments.assignment_skip(
                assignment_id=assignment_id,
                annotator=request.user,
                reason=skip_form.cleaned_data["reason"],
            )
        except assignments.AssignmentGone:
            return _render_gone(request)
        except ValidationError as exc:
            _add_service_errors(skip_form, exc)
    if skip_form.errors:
        return _render_again(request, assignment_id, skip_form=skip_form, status=422)
    if not request.htmx:
        messages.info(request, "Task skipped.")
        return redirect("annotate")
    return _render_task(
        request, assignments.task_next(annotator=request.user), notice="Task skipped."
    )


# --- batches (admins) -------------------------------------------------------------------


def _render_batch_list(request, form, *, status=200):
    rows = [(batch, selectors.batch_progress(batch)) for batch in selectors.batch_list()]
    return render(request, "batches/list.html", {"rows": rows, "form": form}, status=status)


@require_GET
@manager_required
def batch_list(request):
    return _render_batch_list(request, BatchCreateForm())


@require_POST
@manager_required
def batch_create(request):
    form = BatchCreateForm(request.POST)
    if form.is_valid():
        try:
            batch = services.batch_create(**form.cleaned_data, created_by=request.user)
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(
                request, f"Batch “{batch.name}” created. Import comparisons, then open it."
            )
            return redirect("batch_detail", batch_id=batch.pk)
    return _render_batch_list(request, form, status=400)


def _render_batch_detail(request, batch_id: int, *, status=200, **extra):
    batch = get_object_or_404(selectors.batch_list(), pk=batch_id)
    page = Paginator(selectors.comparison_list_for_batch(batch), 25).get_page(
        request.GET.get("page")
    )
    demonstrations = Paginator(selectors.demonstration_list_for_batch(batch), 25).get_page(
        request.GET.get("demonstrations_page")
    )
    transitions = [
        (
            to.value,
            TRANSITION_VERBS[to] if not (to is Batch.Status.OPEN and batch.opened_at) else "Reopen",
        )
        for to in Batch.Status
        if to in services.ALLOWED_TRANSITIONS[Batch.Status(batch.status)]
    ]
    context = {
        "batch": batch,
        "progress": selectors.batch_progress(batch),
        "page": page,
        "demonstrations": demonstrations,
        "transitions": transitions,
        "editable": batch.status in (Batch.Status.DRAFT, Batch.Status.OPEN),
        "import_form": ImportForm(),
        **extra,
    }
    return render(request, "batches/detail.html", context, status=status)


@require_GET
@manager_required
def batch_detail(request, batch_id: int):
    return _render_batch_detail(request, batch_id)


@require_POST
@manager_required
def batch_transition(request, batch_id: int):
    batch = get_object_or_404(Batch, pk=batch_id)
    to = request.POST.get("to", "")
    if to not in Batch.Status.values:
        return _render_batch_detail(
            request, batch_id, transition_errors=[f"Unknown status {to!r}."], status=400
        )
    try:
        batch = services.batch_transition(batch=batch, to=to, by=request.user)
    except ValidationError as exc:
        return _render_batch_detail(request, batch_id, transition_errors=exc.messages, status=400)
    messages.success(request, f"Batch “{batch.name}” is now {batch.get_status_display().lower()}.")
    return redirect("batch_detail", batch_id=batch.pk)


@require_POST
@manager_required
def batch_import(request, batch_id: int):
    batch = get_object_or_404(Batch, pk=batch_id)
    form = ImportForm(request.POST, request.FILES)
    report = error = None
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            report = services.comparisons_import(
                batch=batch,
                stream=upload,
                fmt=form.cleaned_data["fmt"],
                filename=upload.name,
                category=form.cleaned_data["category"] or None,
                with_labels=form.cleaned_data["with_labels"],
                skip_invalid=form.cleaned_data["skip_invalid"],
                created_by=request.user,
                max_bytes=settings.PAIRWISE_IMPORT_MAX_BYTES,
                kind=form.cleaned_data["kind"],
            )
        except ImportFileError as exc:
            error = exc
        except ValidationError as exc:
            _add_service_errors(form, exc)
    ok = report is not None
    return _render_batch_detail(
        request,
        batch_id,
        import_form=ImportForm() if ok else form,
        import_report=report,
        import_error=error,
        status=200 if ok else 413 if isinstance(error, ImportTooLargeError) else 400,
    )
