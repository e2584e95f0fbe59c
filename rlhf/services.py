"""Writes of the rlhf app: launching an iteration, running and resuming its stages,
live annotation turns.

An iteration is a fixed list of stages run in order, one Celery task each
(``rlhf.tasks.stage_run``, which runs ``rlhf.jobs.stage_run`` in a worker). A stage that
finishes enqueues the next pending one; a stage that fails stops the chain and marks the
iteration failed; ``iteration_resume`` re-queues the failed (or interrupted) stage and
leaves the finished ones alone. Nothing here reaches torch (docs/architecture.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Batch
from config.leases import JobKind, stale_before
from modeling.ml.backbones import ENCODER, backbone_of_folder
from rlhf.judges import judge_for_launch
from rlhf.methods import METHODS
from rlhf.models import Iteration, IterationStage
from rlhf.settings import IterationSettings, IterationSettingsError

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

Stage = IterationStage.Name

# The stages of each method, in order (``rlhf.methods``).
STAGES_BY_METHOD = {method: list(info.stages) for method, info in METHODS.items()}


def base_policy() -> tuple[str, Path]:
    """The first iteration's starting policy: the newest ready base model in the registry,
    else the folder ``MODELS_DIR/base``."""
    from modeling.selectors import base_model_latest

    base = base_model_latest()
    if base is not None:
        return base.name, Path(base.path)
    return "base", Path(settings.MODELS_DIR) / "base"


def policy_dir(number: int) -> Path:
    return Path(settings.MODELS_DIR) / "policies" / f"RLHF-V{number}"


def stage_enqueue(stage: IterationStage) -> None:
    """Mark ``stage`` queued and send its task once the transaction commits."""
    from rlhf import tasks

    IterationStage.objects.filter(pk=stage.pk).update(status=IterationStage.Status.QUEUED)
    transaction.on_commit(lambda: tasks.stage_run.delay(stage.pk))


# How stages are leased by the worker running them, and sent again when it dies
# (config/leases.py; rlhf.jobs claims them).
def _requeue_stage(stage_id: int) -> None:
    from rlhf import tasks

    tasks.stage_run.delay(stage_id)


ITERATION_STAGES = JobKind(
    label="iteration stage",
    model=IterationStage,
    running=IterationStage.Status.RUNNING,
    queued=IterationStage.Status.QUEUED,
    # PENDING: not this stage's turn yet (the stage before queues it); FAILED: resume does.
    finished=(
        IterationStage.Status.DONE,
        IterationStage.Status.SKIPPED,
        IterationStage.Status.FAILED,
        IterationStage.Status.PENDING,
    ),
    requeue=_requeue_stage,
)


@transaction.atomic
def iteration_launch(
    *,
    batch_ids: list[int],
    method: str = Iteration.Method.BOTH,
    settings_json: dict | None = None,
    created_by: User | None = None,
    start_policy_name: str | None = None,
    start_policy_path: str | None = None,
    parent: str | None = None,
) -> Iteration:
    """Create RLHF-V{N} from the latest accepted policy (or the base model), or from the
    policy named ``parent`` (several methods can start from the same parent and be
    compared side by side in the lineage), and queue its first stage. Precondition: the
    batches exist and are frozen."""
    from rlhf import selectors

    try:
        config = IterationSettings.from_json(settings_json or {})
    except IterationSettingsError as exc:
        raise ValidationError(
            {f"settings.{path}": message for path, message in exc.errors.items()}
        ) from exc
    if method not in Iteration.Method.values:
        raise ValidationError({"method": f"Unknown method {method!r}."})
    batches = list(Batch.objects.filter(pk__in=batch_ids))
    if not batches:
        raise ValidationError({"batches": "Pick at least one frozen batch."})
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
    _method_data_check(method, batches)
    judge_for_launch(
        name=config.evaluation.judge,
        batch_ids=[b.pk for b in batches],
        proxy_paths={p for p in (config.reward_helpfulness_path, config.reward_safety_path) if p},
    )
    if Iteration.objects.select_for_update().filter(status=Iteration.Status.RUNNING).exists():
        raise ValidationError(
            {"iteration": "An iteration is already running; resume or finish it first."}
        )
    if parent:
        chosen = selectors.policy_by_name(parent)
        if chosen is None:
            raise ValidationError({"parent": selectors.policy_refusal(parent)})
        start_policy_name, start_policy_path = chosen.name, str(chosen.path)
    if start_policy_path is None:
        current = selectors.policy_current()
        start_policy_name, start_policy_path = current.name, str(current.path)
    if not Path(start_policy_path).is_dir():
        raise ValidationError(
            {"policy": f"The starting policy folder {start_policy_path} does not exist."}
        )
    if (Path(start_policy_path) / "config.json").is_file() and (
        backbone_of_folder(start_policy_path) == ENCODER
    ):
        raise ValidationError(
            {
                "policy": f"{start_policy_name or start_policy_path} is an encoder: it cannot "
                "generate, so it cannot be a policy (it can start a reward model)."
            }
        )
    number = (Iteration.objects.aggregate(n=Max("number"))["n"] or 0) + 1
    iteration = Iteration.objects.create(
        number=number,
        method=method,
        config=config.as_json(),
        created_by=created_by,
        start_policy_name=start_policy_name or "base",
        start_policy_path=str(start_policy_path),
    )
    iteration.batches.set(batches)
    stages = [
        IterationStage(iteration=iteration, name=name, order=i)
        for i, name in enumerate(STAGES_BY_METHOD[Iteration.Method(method)])
    ]
    IterationStage.objects.bulk_create(stages)
    first = iteration.stages.order_by("order").first()
    assert first is not None  # every method has stages
    stage_enqueue(first)
    logger.info("launched %s (%s) on batches %s", iteration, method, [b.name for b in batches])
    return iteration


def _method_data_check(method: str, batches: list[Batch]) -> None:
    """Refuse a method whose batches hold none of what it trains from."""
    from annotation.models import Demonstration, Label

    names = ", ".join(b.name for b in batches)
    if method == Iteration.Method.SFT:
        if not Demonstration.objects.filter(batch__in=batches).exists():
            raise ValidationError(
                {
                    "batches": f"SFT trains on demonstrations, and {names} hold none: import "
                    "demonstrations or write them in the live page."
                }
            )
        return
    labelled = Label.objects.filter(comparison__batch__in=batches, comparison__is_gold=False)
    if method in (Iteration.Method.DPO, Iteration.Method.RS_DPO) and not labelled.exists():
        raise ValidationError(
            {"batches": f"DPO trains on labelled pairs, and {names} hold no labels."}
        )


@transaction.atomic
def iteration_resume(*, iteration_id: int) -> IterationStage:
    """Re-queue the first unfinished stage of a failed or interrupted iteration."""
    iteration = Iteration.objects.select_for_update().get(pk=iteration_id)
    if iteration.status not in (Iteration.Status.FAILED, Iteration.Status.RUNNING):
        raise ValidationError(
            {"iteration": f"{iteration} is {iteration.status}; there is nothing to resume."}
        )
    stage = (
        iteration.stages.exclude(
            status__in=[IterationStage.Status.DONE, IterationStage.Status.SKIPPED]
        )
        .order_by("order")
        .first()
    )
    if stage is None:
        raise ValidationError({"iteration": f"All stages of {iteration} are done."})
    if (
        stage.status == IterationStage.Status.RUNNING
        and stage.heartbeat_at is not None
        and stage.heartbeat_at >= stale_before()
    ):
        # Queued again, it would run twice at once; a dead worker's stage comes back by itself.
        raise ValidationError(
            {"iteration": f"{stage.get_name_display()} of {iteration} is running in a worker."}
        )
    Iteration.objects.filter(pk=iteration.pk).update(status=Iteration.Status.RUNNING, error="")
    IterationStage.objects.filter(pk=stage.pk).update(error="", message="resumed")
    stage_enqueue(stage)
    return stage


def stage_log(stage_id: int, message: str, progress: float | None = None) -> None:
    """Append a line to a stage's log (and set its progress); the running task is the only writer."""
    stage = IterationStage.objects.get(pk=stage_id)
    stamp = timezone.now().strftime("%H:%M:%S")
    fields: dict[str, str | float] = {
        "log": stage.log + f"[{stamp}] {message}\n",
        "message": message[:300],
    }
    if progress is not None:
        fields["progress"] = max(0.0, min(1.0, progress))
    IterationStage.objects.filter(pk=stage_id).update(**fields)
    logger.info("%s: %s", stage.get_name_display(), message)


def iteration_reject(*, iteration_id: int, reason: str) -> None:
    """Called by the evaluate stage: the new policy stays registered for the record but is
    not used; the next-batch stage is skipped."""
    with transaction.atomic():
        Iteration.objects.filter(pk=iteration_id).update(
            status=Iteration.Status.REJECTED, error=reason, finished_at=timezone.now()
        )
        IterationStage.objects.filter(
            iteration_id=iteration_id, status=IterationStage.Status.PENDING
        ).update(status=IterationStage.Status.SKIPPED, message="skipped: policy not accepted")
