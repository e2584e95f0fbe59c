"""The batch quality page (admins): gold rate and pause rule, adaptive overlap, queue
order; gold comparisons; each annotator's gold record, with pause and resume."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.gold import selectors, services
from annotation.gold.forms import BatchQualityForm, GoldMarkForm, PauseForm
from annotation.models import Batch, Comparison
from annotation.queue import pauses
from annotation.selectors import batch_progress
from annotation.views import manager_required


def _add_service_errors(form, exc: ValidationError) -> None:
    """A service's errors on the form: by field where the form has it."""
    for name, errors in exc.message_dict.items() if hasattr(exc, "error_dict") else []:
        form.add_error(name if name in form.fields else None, errors)
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)


def _render(request, batch_id: int, *, status: int = 200, **forms):
    batch = get_object_or_404(Batch, pk=batch_id)
    context = {
        "batch": batch,
        "progress": batch_progress(batch),
        "settings_form": forms.get("settings_form") or BatchQualityForm.for_batch(batch),
        "gold_form": forms.get("gold_form") or GoldMarkForm(),
        "pause_error": forms.get("pause_error"),
        "annotators": selectors.annotator_gold_list(batch_ids=[batch.pk]),
        "events": selectors.pause_event_list(batch=batch)[:50],
        "gold": selectors.gold_list()[:50],
    }
    return render(request, "batches/quality.html", context, status=status)


@require_GET
@manager_required
def batch_quality(request, batch_id: int):
    return _render(request, batch_id)


@require_POST
@manager_required
def batch_quality_settings(request, batch_id: int):
    batch = get_object_or_404(Batch, pk=batch_id)
    form = BatchQualityForm(request.POST)
    if form.is_valid():
        try:
            services.batch_quality_update(batch=batch, by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _add_service_errors(form, exc)
        else:
            messages.success(request, "Quality settings saved.")
            return redirect("batch_quality", batch_id=batch.pk)
    return _render(request, batch_id, settings_form=form, status=400)


@require_POST
@manager_required
def gold_mark(request, batch_id: int):
    form = GoldMarkForm(request.POST)
    if form.is_valid():
        data = dict(form.cleaned_data)
        comparison = Comparison.objects.filter(pk=data.pop("comparison")).first()
        if comparison is None:
            form.add_error("comparison", "No comparison with this id.")
        else:
            try:
                services.gold_mark(comparison=comparison, by=request.user, **data)
            except ValidationError as exc:
                _add_service_errors(form, exc)
            else:
                messages.success(request, f"Comparison {comparison.pk} is gold.")
                return redirect("batch_quality", batch_id=batch_id)
    return _render(request, batch_id, gold_form=form, status=400)


def _pause_view(paused: bool):
    @require_POST
    @manager_required
    def view(request, batch_id: int, user_id: int):
        batch = get_object_or_404(Batch, pk=batch_id)
        annotator = get_object_or_404(get_user_model(), pk=user_id)
        form = PauseForm(request.POST)
        if form.is_valid():
            write = pauses.annotator_pause if paused else pauses.annotator_resume
            try:
                write(annotator=annotator, batch=batch, by=request.user, **form.cleaned_data)
            except ValidationError as exc:
                return _render(request, batch_id, pause_error=" ".join(exc.messages), status=400)
            verb = "paused" if paused else "resumed"
            messages.success(request, f"{annotator.username} {verb} on {batch.name}.")
            return redirect("batch_quality", batch_id=batch_id)
        return _render(request, batch_id, pause_error="Say why (a reason is required).", status=400)

    view.__name__ = "annotator_pause" if paused else "annotator_resume"
    return view


annotator_pause = _pause_view(True)
annotator_resume = _pause_view(False)
