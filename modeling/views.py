"""Pages of the modeling app: registry, model report, run progress, launch forms."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from annotation.models import Batch
from annotation.permissions import LAUNCH_TRAINING, REVIEW
from modeling import plots, selectors, services
from modeling.forms import BaseModelForm, RegisterModelForm, RewardModelForm
from modeling.ml.evaluation import BUCKET_LABELS, BUCKETS


def _errors(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


@require_GET
@permission_required(LAUNCH_TRAINING, raise_exception=True)
def model_list(request):
    return render(
        request,
        "modeling/model_list.html",
        {
            "models": selectors.model_version_list(),
            "runs": selectors.training_run_list(limit=20),
            "table": selectors.reward_model_table(),
            "base_form": BaseModelForm(),
            "rm_form": RewardModelForm(),
            "register_form": RegisterModelForm(),
        },
    )


@require_GET
@permission_required(LAUNCH_TRAINING, raise_exception=True)
def model_detail(request, model_id: int):
    model = selectors.model_version_get(model_id=model_id)
    if model is None:
        raise Http404("No such model.")
    m = model.metrics or {}
    charts = []
    if model.is_reward and m.get("by_strength"):
        charts.append(
            plots.bar_chart(
                [BUCKET_LABELS[b] for b in BUCKETS],
                [(m["by_strength"].get(b) or {}).get("accuracy") for b in BUCKETS],
                title="Held-out accuracy by strength",
            )
        )
        sets = m.get("test_sets", {})
        charts.append(
            plots.bar_chart(
                list(sets),
                [v.get("accuracy") for v in sets.values()],
                title="Accuracy per test set",
            )
        )
        charts.append(plots.calibration_chart(m.get("calibration", [])))
        charts.append(plots.histogram_chart(m.get("histogram", [])))
    return render(
        request,
        "modeling/model_detail.html",
        {
            "model": model,
            "charts": [mark_safe(c) for c in charts],  # noqa: S308 - built by plots from numbers and escaped labels
            "buckets": [
                (BUCKET_LABELS[b], (m.get("by_strength") or {}).get(b) or {}) for b in BUCKETS
            ],
            "test_sets": sorted((m.get("test_sets") or {}).items()),
            "runs": model.runs.all(),
        },
    )


@require_GET
@permission_required(LAUNCH_TRAINING, raise_exception=True)
def run_detail(request, run_id: int):
    run = selectors.training_run_get(run_id=run_id)
    if run is None:
        raise Http404("No such run.")
    template = "modeling/_run_progress.html" if request.htmx else "modeling/run_detail.html"
    return render(request, template, {"run": run})


@require_POST
@permission_required(LAUNCH_TRAINING, raise_exception=True)
def base_model_create(request):
    form = BaseModelForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Base model not launched: {form.errors.as_text()}")
        return redirect("modeling:list")
    d = form.cleaned_data
    try:
        run = services.base_model_launch(
            name=d["name"],
            config={"max_steps": d["max_steps"], "max_seconds": d["max_seconds"]},
            use_frozen_batches=d["use_frozen_batches"],
            use_shared_hh=d["use_shared_hh"],
            created_by=request.user,
        )
    except ValidationError as exc:
        messages.error(request, f"Base model not launched: {_errors(exc)}")
        return redirect("modeling:list")
    return redirect("modeling:run", run_id=run.pk)


@require_POST
@permission_required(LAUNCH_TRAINING, raise_exception=True)
def model_register(request):
    form = RegisterModelForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Model not registered: {form.errors.as_text()}")
        return redirect("modeling:list")
    d = form.cleaned_data
    try:
        model = services.model_register(
            name=d["name"],
            path=d["path"],
            template="pairwise" if d["use_pairwise_template"] else "auto",
            created_by=request.user,
        )
    except ValidationError as exc:
        fields = ", ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        messages.error(request, f"Model not registered: {fields}")
        return redirect("modeling:list")
    messages.success(request, f"Registered {model.name}.")
    return redirect("modeling:detail", model_id=model.pk)


@require_POST
@permission_required(LAUNCH_TRAINING, raise_exception=True)
def reward_model_train(request):
    form = RewardModelForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Reward model not launched: {form.errors.as_text()}")
        return redirect("modeling:list")
    d = form.cleaned_data
    recipe = {} if d["other_ratio"] is None else {"other_ratio": d["other_ratio"]}
    config = {
        "margin": d["margin"],
        "learning_rate": d["learning_rate"],
        "num_epochs": d["num_epochs"],
    }
    if d["lora_rank"]:
        config["lora"] = {"rank": d["lora_rank"]}
    try:
        run = services.reward_model_launch(
            kind=d["kind"],
            base_model=d["base_model"],
            batch_ids=[b.pk for b in d["batches"]],
            name=d["name"],
            config=config,
            recipe=recipe,
            created_by=request.user,
        )
    except ValidationError as exc:
        messages.error(request, f"Reward model not launched: {_errors(exc)}")
        return redirect("modeling:list")
    return redirect("modeling:run", run_id=run.pk)


@require_POST
@permission_required(REVIEW, raise_exception=True)
def label_check_request(request, batch_id: int):
    """The review page's "Check with the reward model" button: queue the batch's check."""
    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        raise Http404("No such batch.")
    try:
        queued = services.label_check_request(batch=batch)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(
            request,
            f"Reward-model check queued ({'; '.join(queued)}): flagged labels appear here "
            "when the worker is done.",
        )
    return redirect("review:batch", batch_id=batch.pk)
