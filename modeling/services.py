"""Writes of the modeling app that web requests make: launch runs, queue score jobs.

Launch services validate what is cheap to check, create the pending ``ModelVersion`` and
its ``TrainingRun`` and enqueue ``modeling.tasks.training_run_execute`` on commit. What
runs the work (in a worker, or a CLI process) lives in ``modeling.jobs``: this module
never reaches torch or transformers, which the import contracts check (docs/architecture.md).
"""

from __future__ import annotations

import logging
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction

from annotation.models import Batch, Label
from config.leases import JobKind
from modeling.ml.training.config import BaseModelConfig, DataRecipe, RewardTrainingConfig
from modeling.models import REWARD_KINDS, ModelKind, ModelVersion, ScoreJob, TrainingRun

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

CORPUS_FILE = Path(__file__).resolve().parent / "corpus" / "dialogues.jsonl"
PROGRESS_EVERY_SECONDS = 2.0
HH_FILES = {
    "helpful-base/test.jsonl.gz": "helpfulness",
    "helpful-rejection-sampled/test.jsonl.gz": "helpfulness",
    "harmless-base/test-dev.jsonl.gz": "safety",
}


def _next_name(prefix: str, kind: str) -> str:
    n = ModelVersion.objects.filter(kind=kind).count() + 1
    while ModelVersion.objects.filter(name=f"{prefix}{n}").exists():
        n += 1
    return f"{prefix}{n}"


def _enqueue(run: TrainingRun) -> None:
    from modeling.tasks import training_run_execute

    transaction.on_commit(lambda: training_run_execute.delay(run.pk))


# How training runs and score jobs are leased by the worker running them, and sent again
# when it dies (config/leases.py; modeling.jobs claims them).
def _requeue_run(run_id: int) -> None:
    from modeling.tasks import training_run_execute as task

    task.delay(run_id)


def _requeue_score_job(job_id: int) -> None:
    from modeling.tasks import score_job_execute as task

    task.delay(job_id)


TRAINING_RUNS = JobKind(
    label="training run",
    model=TrainingRun,
    running=TrainingRun.Status.RUNNING,
    queued=TrainingRun.Status.QUEUED,
    finished=(TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED),
    requeue=_requeue_run,
)
SCORE_JOBS = JobKind(
    label="score job",
    model=ScoreJob,
    running=ScoreJob.Status.RUNNING,
    queued=ScoreJob.Status.QUEUED,
    finished=(ScoreJob.Status.SUCCEEDED, ScoreJob.Status.FAILED),
    requeue=_requeue_score_job,
)


def model_name_check(name: str) -> str:
    """``name`` stripped, if it is a usable, free model name; else a ``ValidationError``."""
    name = name.strip()
    if not name or "/" in name or name.startswith("."):
        raise ValidationError(
            {"name": "A model name must be non-empty, without '/' or a leading dot."}
        )
    if ModelVersion.objects.filter(name=name).exists():
        raise ValidationError({"name": f"A model named {name!r} already exists."})
    return name


def model_register(
    *,
    name: str,
    path: str,
    template: str = "auto",
    kind: str = ModelKind.BASE,
    created_by: User | None = None,
) -> ModelVersion:
    """Register a local Hugging Face model folder as ready, after checks that read its files
    only (the Models page and ``--register`` both come here): a model folder, a causal LM
    (an encoder only as a base, which then starts reward models only: ``modeling.ml.
    backbones``), and a chat template Pairwise can use (``modeling.ml.chat``): the model's
    own, Pairwise's markers, or, with ``template="pairwise"``, Pairwise's template given to a
    linked copy of the folder under MODELS_DIR. Raises ``ValidationError`` naming the field
    (name, path, template); nothing is written then."""
    from django.conf import settings

    from modeling.ml.backbones import ENCODER, backbone_of_folder
    from modeling.ml.chat import (
        PAIRWISE,
        TEMPLATE_CHOICES,
        ChatTemplateError,
        folder_architectures,
        folder_with_pairwise_template,
        model_folder_problem,
        template_decide,
    )

    name = model_name_check(name)
    if template not in TEMPLATE_CHOICES:
        raise ValidationError({"template": f"Choose one of {', '.join(TEMPLATE_CHOICES)}."})
    folder = Path(path.strip()).expanduser() if path.strip() else None
    problem = model_folder_problem(folder) if folder else "Give the model folder's path."
    if problem:
        raise ValidationError({"path": problem})
    assert folder is not None
    folder = folder.resolve()
    backbone = backbone_of_folder(folder)
    record: dict = {"source": str(folder)}
    if backbone == ENCODER:
        if kind != ModelKind.BASE:
            raise ValidationError(
                {
                    "path": f"{folder} holds an encoder: it cannot generate, so it cannot be a policy."
                }
            )
        if template == PAIRWISE:
            raise ValidationError(
                {"template": "An encoder reads plain text; a chat template does not apply."}
            )
    else:
        archs = folder_architectures(folder)
        if not any(a.endswith("ForCausalLM") for a in archs):
            raise ValidationError(
                {"path": f"{folder} is not a causal LM (architectures: {archs or 'none'})."}
            )
        try:
            decision = template_decide(folder)
        except ChatTemplateError as exc:
            if template != PAIRWISE:
                raise ValidationError({"template": str(exc)}) from None
            decision = None
        if template == PAIRWISE and (decision is None or decision.name != PAIRWISE):
            target = Path(settings.MODELS_DIR) / name
            if target.exists():
                raise ValidationError({"name": f"{target} already exists; choose another name."})
            folder = folder_with_pairwise_template(folder, target)
            decision = template_decide(folder)
        assert decision is not None
        record |= {"chat_template": decision.name, "chat_template_reason": decision.reason}
    try:
        with transaction.atomic():
            return ModelVersion.objects.create(
                name=name,
                kind=kind,
                status=ModelVersion.Status.READY,
                path=str(folder),
                tokenizer_path=str(folder),
                backbone=backbone,
                config=record,
                description="Registered from a local folder.",
                created_by=created_by,
            )
    except BaseException:
        if str(folder) != record["source"]:
            shutil.rmtree(folder, ignore_errors=True)
        raise


@transaction.atomic
def base_model_launch(
    *,
    name: str = "",
    config: dict | None = None,
    use_frozen_batches: bool = True,
    use_shared_hh: bool = False,
    held_out_fraction: float = 0.1,
    held_out_seed: int = 0,
    created_by: User | None = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Queue creation of the default base model (tokenizer + pretrained small Llama).

    Text: the built-in dialogue corpus, plus dialogues of frozen batches and/or the HH files
    in SHARED_DATA_DIR; prompts in the held-out split (``held_out_fraction``/``held_out_seed``,
    the reward runs' defaults) are left out so no evaluation pair is ever trained on.
    """
    try:
        cfg = BaseModelConfig.from_dict(config or {})
    except (TypeError, ValueError) as exc:
        raise ValidationError({"config": str(exc)}) from None
    name = model_name_check(name or _next_name("base-v", ModelKind.BASE))
    model = ModelVersion.objects.create(
        name=name, kind=ModelKind.BASE, config=cfg.to_dict(), created_by=created_by
    )
    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.BASE,
        result_name=name,
        result=model,
        created_by=created_by,
        config={
            "base": cfg.to_dict(),
            "use_frozen_batches": use_frozen_batches,
            "use_shared_hh": use_shared_hh,
            "held_out_fraction": held_out_fraction,
            "held_out_seed": held_out_seed,
        },
    )
    if enqueue:
        _enqueue(run)
    return run


@transaction.atomic
def reward_model_launch(
    *,
    kind: str,
    base_model: ModelVersion,
    batch_ids: list[int],
    name: str = "",
    config: dict | None = None,
    recipe: dict | None = None,
    created_by: User | None = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Queue training of a helpfulness or safety RM from ``base_model`` on frozen batches."""
    if kind not in ("helpfulness", "safety"):
        raise ValidationError({"kind": "Choose helpfulness or safety."})
    if not base_model.is_ready:
        raise ValidationError(
            {"base_model": f"{base_model.name} is {base_model.status}, not ready."}
        )
    if not batch_ids:
        raise ValidationError({"batches": "Choose at least one frozen batch."})
    batches = list(Batch.objects.filter(pk__in=batch_ids))
    if len(batches) != len(set(batch_ids)):
        raise ValidationError({"batches": "Some of the chosen batches do not exist."})
    not_frozen = [b.name for b in batches if not b.is_frozen]
    if not_frozen:
        raise ValidationError(
            {"batches": f"Only frozen batches train models; not frozen: {', '.join(not_frozen)}."}
        )
    evaluation = [b.name for b in batches if b.is_evaluation]
    if evaluation:
        raise ValidationError(
            {"batches": f"Evaluation batches never train models: {', '.join(evaluation)}."}
        )
    try:
        cfg = RewardTrainingConfig.from_dict(config or {})
        rec = DataRecipe.from_dict({**(recipe or {}), "kind": kind})
    except (TypeError, ValueError) as exc:
        raise ValidationError({"config": str(exc)}) from None
    model_kind = ModelKind.REWARD_HELPFULNESS if kind == "helpfulness" else ModelKind.REWARD_SAFETY
    name = model_name_check(name or _next_name(f"RM-{kind}-V", model_kind))
    model = ModelVersion.objects.create(
        name=name,
        kind=model_kind,
        parent=base_model,
        config={"training": cfg.to_dict(), "recipe": rec.to_dict()},
        tokenizer_path=base_model.tokenizer_path,
        backbone=base_model.backbone,
        created_by=created_by,
    )
    run = TrainingRun.objects.create(
        kind=model_kind,
        base_model=base_model,
        result_name=name,
        result=model,
        created_by=created_by,
        config={"training": cfg.to_dict(), "recipe": rec.to_dict()},
    )
    run.batches.set(batches)
    if enqueue:
        _enqueue(run)
    return run


def model_version_set_judge(*, model: ModelVersion, is_judge: bool) -> ModelVersion:
    """Mark (or unmark) a ready reward model as a judge: it then scores new policies in
    their evaluations, next to the reward models they were optimised against."""
    if is_judge and not (model.is_reward and model.is_ready):
        raise ValidationError(
            {
                "model": f"Only a ready reward model can judge; {model.name} is a "
                f"{model.status} {model.get_kind_display()} model."
            }
        )
    ModelVersion.objects.filter(pk=model.pk).update(is_judge=is_judge)
    model.is_judge = is_judge
    return model


def model_version_delete_files(*, model: ModelVersion) -> None:
    """Remove a failed model's leftovers (never a ready model's folder)."""
    if model.status == ModelVersion.Status.READY:
        raise ValidationError({"status": "Ready models keep their files."})
    if model.path:
        shutil.rmtree(model.path, ignore_errors=True)


# --- scoring (the API's jobs; modeling.jobs.score_job_execute runs them in a worker) ---

MAX_SCORE_ITEMS = 64


@transaction.atomic
def score_job_create(
    *,
    model: ModelVersion,
    items: list[dict],
    single: bool = False,
    created_by: User | None = None,
) -> ScoreJob:
    """Queue scoring of ``items`` ({"dialogue": [turns], "response": str}) with ``model``.

    Precondition: the items are validated (the API's serializer does it). Only registry
    facts are checked here; whether the folder really holds a reward model is found out
    by the worker, which fails the job with the reason."""
    if not model.is_reward:
        raise ValidationError(
            {"model": f"{model.name} is a {model.get_kind_display()} model, not a reward model."}
        )
    if not model.is_ready:
        raise ValidationError({"model": f"{model.name} is {model.status}, not ready."})
    if not items or len(items) > MAX_SCORE_ITEMS:
        raise ValidationError({"items": f"Send between 1 and {MAX_SCORE_ITEMS} items."})
    job = ScoreJob.objects.create(model=model, items=items, single=single, created_by=created_by)

    from modeling.tasks import score_job_execute

    transaction.on_commit(lambda: score_job_execute.delay(job.pk))
    return job


# --- label checks (review flags from a reward model; modeling.jobs.label_check_execute) ---

REWARD_KIND_OF_CATEGORY = {
    "helpfulness": ModelKind.REWARD_HELPFULNESS,
    "safety": ModelKind.REWARD_SAFETY,
}


def label_check_request(*, batch: Batch) -> list[str]:
    """Queue a reward-model check of a batch's labels, one per category it has labels in,
    with that category's newest ready reward model. Returns "category: model" per check
    queued; raises ``ValidationError`` for a frozen batch, or when no category of the
    batch has a ready reward model yet."""
    from modeling.selectors import model_version_latest_ready
    from modeling.tasks import label_check_execute

    if batch.status == Batch.Status.FROZEN:
        raise ValidationError({"batch": f"Batch {batch.name!r} is frozen: its review is final."})
    categories = sorted(
        set(
            Label.objects.filter(comparison__batch=batch).values_list(
                "comparison__category", flat=True
            )
        )
    )
    if not categories:
        raise ValidationError({"batch": f"Batch {batch.name!r} has no labels to check."})
    queued = []
    for category in categories:
        model = model_version_latest_ready(kind=REWARD_KIND_OF_CATEGORY[category])
        if model is None:
            continue
        transaction.on_commit(partial(label_check_execute.delay, batch.pk, model.pk, category))
        queued.append(f"{category}: {model.name}")
    if not queued:
        raise ValidationError(
            {
                "batch": f"No ready reward model for {' or '.join(categories)} yet: train one "
                "on earlier frozen batches first."
            }
        )
    return queued


def label_checks_after_training(*, model: ModelVersion) -> None:
    """A new reward model checks the labels of every open or closed training batch of its
    category (called by the worker when the model becomes ready)."""
    from modeling.tasks import label_check_execute

    category = next(c for c, kind in REWARD_KIND_OF_CATEGORY.items() if kind == model.kind)
    batch_ids = (
        Label.objects.filter(
            comparison__category=category,
            comparison__batch__status__in=[Batch.Status.OPEN, Batch.Status.CLOSED],
            comparison__batch__purpose=Batch.Purpose.TRAINING,
        )
        .values_list("comparison__batch_id", flat=True)
        .distinct()
    )
    for batch_id in sorted(set(batch_ids)):
        transaction.on_commit(partial(label_check_execute.delay, batch_id, model.pk, category))


__all__ = [
    "REWARD_KINDS",
    "queue_priorities_refresh",
    "queue_priorities_request",
    "queue_priorities_stale_batches",
    "label_check_request",
    "label_checks_after_training",
    "base_model_launch",
    "model_name_check",
    "model_version_delete_files",
    "model_version_set_judge",
    "reward_model_launch",
    "score_job_create",
]


# --- queue order by uncertainty (annotation.models.Batch.queue_order) --------------------


def queue_priorities_stale_batches() -> list[int]:
    """Draft or open batches ordered by uncertainty whose order was never computed, or was
    computed before the newest ready reward model of their kinds."""
    batches = Batch.objects.filter(
        status__in=[Batch.Status.DRAFT, Batch.Status.OPEN],
        queue_order__in=[Batch.QueueOrder.MARGIN, Batch.QueueOrder.ENSEMBLE],
    )
    newest = {
        kind: ModelVersion.objects.filter(
            kind=kind, status=ModelVersion.Status.READY, is_judge=False
        )
        .order_by("-updated_at")
        .values_list("updated_at", flat=True)
        .first()
        for kind in REWARD_KIND_OF_CATEGORY.values()
    }
    newest_any = max((t for t in newest.values() if t is not None), default=None)
    if newest_any is None:
        return []
    return [
        b.pk
        for b in batches.order_by("id")
        if b.priorities_computed_at is None or b.priorities_computed_at < newest_any
    ]


def queue_priorities_request(*, batch: Batch) -> None:
    """Queue the worker that orders a batch by reward-model uncertainty
    (``modeling.jobs.queue_priorities_compute``). Raises ``ValidationError`` unless the
    batch is draft or open and ordered by uncertainty."""
    from modeling.tasks import queue_priorities_compute

    if batch.queue_order == Batch.QueueOrder.ARRIVAL:
        raise ValidationError(
            {
                "queue_order": f"Batch {batch.name!r} is in arrival order: set an uncertainty order first."
            }
        )
    if batch.status not in (Batch.Status.DRAFT, Batch.Status.OPEN):
        raise ValidationError(
            {"batch": f"Batch {batch.name!r} is {batch.status}: its queue is done."}
        )
    transaction.on_commit(lambda: queue_priorities_compute.delay(batch.pk))


def queue_priorities_refresh() -> list[int]:
    """Queue ``queue_priorities_compute`` for every stale batch; returns their ids."""
    from modeling.tasks import queue_priorities_compute

    stale = queue_priorities_stale_batches()
    for batch_id in stale:
        transaction.on_commit(partial(queue_priorities_compute.delay, batch_id))
    return stale
