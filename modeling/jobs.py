"""Worker-side code of the modeling app: what a Celery worker (or a CLI command) runs, never
a web request. It adapts between the ORM and the Django-free ML code in ``modeling.ml``
(torch is imported only inside the functions that train or score).

``training_run_execute`` runs a queued run to the end; any failure ends the run with a
readable error, marks its model failed, and leaves every earlier model as it was.
``score_job_execute`` scores an API score job with reward models held per worker process.
``checkpoint_register`` registers a local checkpoint folder once it loads.
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, TextField, Value
from django.db.models.functions import Concat
from django.utils import timezone

from annotation.models import Batch, Label
from config.leases import LeaseLost, heartbeat_seconds, job_beat, job_claim, job_heartbeat
from modeling.ml.training.config import BaseModelConfig, DataRecipe, RewardTrainingConfig
from modeling.models import ModelKind, ModelVersion, ScoreJob, TrainingRun
from modeling.services import (
    SCORE_JOBS,
    TRAINING_RUNS,
    label_checks_after_training,
    model_register,
    queue_priorities_refresh,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from modeling.ml.inference import RewardScorer
    from modeling.ml.training.trainer import TrainingProgress

logger = logging.getLogger(__name__)

CORPUS_FILE = Path(__file__).resolve().parent / "corpus" / "dialogues.jsonl"
PROGRESS_EVERY_SECONDS = 2.0
HH_FILES = {
    "helpful-base/test.jsonl.gz": "helpfulness",
    "helpful-rejection-sampled/test.jsonl.gz": "helpfulness",
    "harmless-base/test-dev.jsonl.gz": "safety",
}


def checkpoint_register(
    *,
    name: str,
    path: str,
    kind: str = ModelKind.BASE,
    template: str = "auto",
    created_by: User | None = None,
) -> ModelVersion:
    """Register an existing local HF-format checkpoint folder (e.g. Llama 2 weights): the
    checks of ``services.model_register`` (the Models page's), then loading its config and
    tokenizer with transformers; an encoder (BERT, DeBERTa, MiniLM...) only as a base model,
    which then starts reward models only. Nothing stays registered when a check fails."""
    from modeling.ml.basemodel import CheckpointError, load_checkpoint

    with transaction.atomic():
        model = model_register(
            name=name, path=path, template=template, kind=kind, created_by=created_by
        )
        try:
            load_checkpoint(model.path, load_model=False, allow_encoder=kind == ModelKind.BASE)
        except CheckpointError as exc:
            if model.path != model.config.get("source"):  # the linked copy made for it
                shutil.rmtree(model.path, ignore_errors=True)
            raise ValidationError({"path": str(exc)}) from None
    return model


# --- training runs ---------------------------------------------------------------------


def _log(run_id: int, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    TrainingRun.objects.filter(pk=run_id).update(
        log=Concat(F("log"), Value(f"{stamp} {line}\n"), output_field=TextField())
    )
    logger.info("run %s: %s", run_id, line)


class _Progress:
    """Writes progress (and so a heartbeat) to the run row at most every
    PROGRESS_EVERY_SECONDS; raises ``LeaseLost`` if another worker took the run over."""

    def __init__(self, run_id: int, lease: int) -> None:
        self.run_id, self.lease, self.last = run_id, lease, 0.0

    def __call__(self, p: TrainingProgress) -> None:
        now = time.monotonic()
        if (
            now - self.last < PROGRESS_EVERY_SECONDS
            and p.step < p.total_steps
            and p.phase == "train"
        ):
            return
        self.last = now
        job_beat(
            TRAINING_RUNS,
            self.run_id,
            self.lease,
            step=p.step,
            total_steps=p.total_steps,
            loss=p.loss,
            accuracy=p.accuracy,
            eta_seconds=p.eta_seconds,
            phase=p.phase,
        )


def _error_message(exc: BaseException) -> str:
    from modeling.ml.basemodel import CheckpointError
    from modeling.ml.recipes import RecipeError

    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"Out of disk space while writing the model ({exc}). Free space under {settings.MODELS_DIR} and launch again."
    if isinstance(exc, CheckpointError):
        return f"Unusable checkpoint: {exc}"
    if isinstance(exc, RecipeError | ValidationError | ValueError):
        return str(exc.messages[0] if isinstance(exc, ValidationError) else exc)
    return f"{type(exc).__name__}: {exc}"


def training_run_execute(*, run_id: int) -> None:
    """Run a queued (or interrupted) run to the end, in this process.

    Idempotent: a finished run, or one another worker is running (fresh heartbeat), is
    left alone; a run whose worker died (stale heartbeat, see ``config.leases``) is taken
    over and resumes from its last checkpoint with the same total step count. Only the
    lease holder writes the outcome."""
    lease = job_claim(TRAINING_RUNS, run_id)
    if lease is None:
        return
    TrainingRun.objects.filter(pk=run_id, started_at=None).update(started_at=timezone.now())
    run = TrainingRun.objects.get(pk=run_id)
    if run.result_id:
        ModelVersion.objects.filter(pk=run.result_id).update(status=ModelVersion.Status.TRAINING)
    _log(run_id, f"resumed after an interruption (attempt {lease})" if lease > 1 else "started")
    held = TrainingRun.objects.filter(pk=run_id, attempts=lease)
    try:
        with job_heartbeat(TRAINING_RUNS, run_id, lease):
            if run.kind == TrainingRun.Kind.BASE:
                _execute_base(run)
            else:
                _execute_reward(run)
    except LeaseLost:
        _log(run_id, f"attempt {lease} stopped: another worker took the run over")
        return
    except Exception as exc:  # noqa: BLE001 - every failure ends the run with its reason
        message = _error_message(exc)
        logger.exception("run %s failed", run_id)
        if held.update(status=TrainingRun.Status.FAILED, error=message, finished_at=timezone.now()):
            _log(run_id, f"failed: {message}")
            if run.result_id:
                ModelVersion.objects.filter(pk=run.result_id).update(
                    status=ModelVersion.Status.FAILED
                )
        return
    if held.update(status=TrainingRun.Status.SUCCEEDED, finished_at=timezone.now(), phase="done"):
        _log(run_id, "succeeded")


def training_run_finish(*, run_id: int) -> TrainingRun:
    """Run the run here, or wait while another live worker runs it; returns it finished.

    For callers that need the model before going on (the iteration's reward-model stage):
    waiting, it keeps trying to take the run over, so a run whose worker dies meanwhile
    goes on here instead of waiting for the sweep."""
    while True:
        training_run_execute(run_id=run_id)
        run = TrainingRun.objects.get(pk=run_id)
        if not run.is_active:
            return run
        time.sleep(heartbeat_seconds())


def _result_id(run: TrainingRun) -> int:
    """The model ``run`` writes (the launch services always create it)."""
    if run.result_id is None:
        raise ValueError(f"run {run.pk} has no model to write")
    return run.result_id


def _work_dir(run: TrainingRun) -> Path:
    return Path(settings.MODELS_DIR) / ".runs" / str(run.pk)


def builtin_corpus() -> list[str]:
    """The small dialogue corpus shipped in modeling/corpus (written for Pairwise), rendered."""
    import json

    from modeling.ml.chat import render_dialogue

    texts = []
    for line in CORPUS_FILE.read_text().splitlines():
        if line.strip():
            turns = json.loads(line)["turns"]
            texts.append(render_dialogue(turns[:-1], turns[-1]["content"]))
    return texts


def _base_texts(run: TrainingRun) -> tuple[list[str], dict]:
    from annotation import importers, selectors
    from annotation.domain import Category, PreferencePair
    from modeling.ml.chat import render_dialogue
    from modeling.ml.recipes import held_out_split

    cfg = run.config
    texts = builtin_corpus()
    sources = {"builtin_corpus": len(texts)}
    pairs: list[PreferencePair] = []
    if cfg.get("use_frozen_batches", True):
        frozen = list(
            Batch.objects.filter(
                status=Batch.Status.FROZEN, purpose=Batch.Purpose.TRAINING
            ).values_list("id", flat=True)
        )
        if frozen:
            pairs += selectors.preference_pairs_frozen(batch_ids=frozen)
    if cfg.get("use_shared_hh"):
        root = Path(settings.SHARED_DATA_DIR) / "hh-rlhf"
        for rel, category in HH_FILES.items():
            if (root / rel).exists():
                with open(root / rel, "rb") as fh:
                    parsed = importers.parse_file(fh, fmt="hh", filename=rel, category=category)
                pairs += [
                    PreferencePair(
                        tuple(r.turns), r.response_a.text, r.response_b.text, "", Category(category)
                    )
                    for r in parsed.rows
                ]
    split = held_out_split(
        pairs, fraction=cfg.get("held_out_fraction", 0.1), seed=cfg.get("held_out_seed", 0)
    )
    seen = set()
    for p in split.train:
        for response in (p.chosen, p.rejected):
            text = render_dialogue(p.context, response)
            if text not in seen:
                seen.add(text)
                texts.append(text)
    sources.update(
        dialogues=len(texts) - sources["builtin_corpus"],
        held_out_prompts_excluded=len(split.held_out_keys),
    )
    return texts, sources


def _execute_base(run: TrainingRun) -> None:
    from modeling.ml.basemodel import base_model_create

    cfg = BaseModelConfig.from_dict(run.config["base"])
    texts, sources = _base_texts(run)
    _log(run.pk, f"pretraining text: {sources}")
    out = Path(settings.MODELS_DIR) / run.result_name

    def progress(step: int, total: int, loss: float, last: list[float] = [0.0]) -> None:  # noqa: B006 - per-call throttle state
        if time.monotonic() - last[0] >= PROGRESS_EVERY_SECONDS or step == total:
            last[0] = time.monotonic()
            job_beat(
                TRAINING_RUNS,
                run.pk,
                run.attempts,
                step=step,
                total_steps=total,
                loss=loss,
                phase="pretrain",
            )

    result = base_model_create(
        texts=texts, output_dir=out, config=cfg, meta={"name": run.result_name}, progress=progress
    )
    _log(
        run.pk,
        f"pretrained {result.steps} steps, loss {result.initial_loss:.3f} → {result.final_loss:.3f}",
    )
    ModelVersion.objects.filter(pk=_result_id(run)).update(
        status=ModelVersion.Status.READY,
        path=str(out),
        tokenizer_path=str(out),
        metrics={"pretraining": asdict(result), "text": sources},
    )


def _execute_reward(run: TrainingRun) -> None:
    from annotation import selectors
    from annotation.domain import Category
    from modeling.ml.evaluation import ScoredPair, reward_metrics
    from modeling.ml.recipes import RecipeError, held_out_split, recipe_select
    from modeling.ml.training.trainer import reward_model_train

    cfg = RewardTrainingConfig.from_dict(run.config["training"])
    recipe = DataRecipe.from_dict(run.config["recipe"])
    batches = list(run.batches.all())
    empty = [b.name for b in batches if not Label.objects.filter(comparison__batch=b).exists()]
    if empty:
        raise RecipeError(f"batch(es) with no labels: {', '.join(empty)}")
    base = run.base_model
    if base is None or not base.path:
        raise RecipeError("the run has no base checkpoint")
    pairs = selectors.preference_pairs_frozen(batch_ids=[b.pk for b in batches])
    split = held_out_split(pairs, fraction=cfg.eval_fraction, seed=cfg.seed)
    train = recipe_select(split.train, recipe)
    # Test sets: both categories, each imported source separately.
    eval_pairs = split.held_out
    TrainingRun.objects.filter(pk=run.pk).update(
        held_out={
            "fraction": cfg.eval_fraction,
            "seed": cfg.seed,
            "pairs": len(eval_pairs),
            "train_pairs": len(train),
            "by_category": {c.value: sum(p.category == c for p in eval_pairs) for c in Category},
            "prompt_keys": split.held_out_keys,
        }
    )
    _log(run.pk, f"{len(train)} training pairs ({recipe.kind} recipe), {len(eval_pairs)} held out")
    out = Path(settings.MODELS_DIR) / run.result_name
    result = reward_model_train(
        checkpoint=base.path,
        train_pairs=train,
        eval_pairs=eval_pairs,
        output_dir=out,
        work_dir=_work_dir(run),
        config=cfg,
        meta={"name": run.result_name, "parent": base.name, "recipe": recipe.to_dict()},
        progress=_Progress(run.pk, run.attempts),
    )
    if result.resumed_from_step:
        _log(run.pk, f"resumed from step {result.resumed_from_step}")
    scored = [
        ScoredPair(
            c,
            r,
            p.strength or "",
            p.category if not p.source else f"{p.category} · {p.source}",
            chosen_length=len(p.chosen.split()),
            rejected_length=len(p.rejected.split()),
            turns=sum(t.role == "user" for t in p.context),
        )
        for p, (c, r) in zip(eval_pairs, result.eval_rewards, strict=True)
    ]
    metrics = reward_metrics(scored)
    metrics["by_category"] = {
        c.value: reward_metrics(
            [s for s, p in zip(scored, eval_pairs, strict=True) if p.category == c]
        )
        for c in Category
    }
    metrics["training"] = {
        "steps": result.steps,
        "train_pairs": result.train_pairs,
        "seconds": result.train_seconds,
        "pairs_per_second": result.pairs_per_second,
        "final_loss": result.final_loss,
        "train_accuracy": result.train_accuracy,
    }
    if metrics["accuracy"] is None:
        _log(run.pk, "no held-out pairs (too little data for the held-out fraction): no accuracy")
    else:
        _log(run.pk, f"held-out accuracy {metrics['accuracy']:.3f} on {len(eval_pairs)} pairs")
    with transaction.atomic():
        model = ModelVersion.objects.select_for_update().get(pk=_result_id(run))
        model.status, model.path, model.metrics = ModelVersion.Status.READY, str(out), metrics
        model.tokenizer_path = str(out)
        model.trained_on_hashes = {b.name: b.freeze_hash for b in batches}
        model.save()
        model.trained_on.set(batches)
        label_checks_after_training(model=model)
        queue_priorities_refresh()  # batches ordered by uncertainty: by the new model
    shutil.rmtree(_work_dir(run), ignore_errors=True)


# --- score jobs ------------------------------------------------------------------------

# Per worker process: (model id, path) → loaded scorer, newest last. Two fit the usual
# traffic (the helpfulness and the safety RM of the week) without holding every RM ever asked for.
SCORERS_KEPT = 2
_scorers: OrderedDict[tuple[int, str], RewardScorer] = OrderedDict()


def _scorer(model: ModelVersion) -> RewardScorer:
    from modeling.ml.inference import RewardScorer

    key = (model.pk, model.path)
    if key in _scorers:
        _scorers.move_to_end(key)
    else:
        _scorers[key] = RewardScorer.load(model.path)
        while len(_scorers) > SCORERS_KEPT:
            _scorers.popitem(last=False)
    return _scorers[key]


def score_job_execute(*, job_id: int) -> None:
    """Score a queued job in this (worker) process. A finished job, or one another worker
    is scoring (fresh heartbeat), is left alone; one whose worker died is scored again; any
    failure ends the job with a readable error."""
    lease = job_claim(SCORE_JOBS, job_id)
    if lease is None:
        return
    job = ScoreJob.objects.select_related("model").get(pk=job_id)
    held = ScoreJob.objects.filter(pk=job_id, attempts=lease)
    try:
        with job_heartbeat(SCORE_JOBS, job_id, lease):
            model = job.model
            if not (model.is_reward and model.is_ready):
                raise ValidationError(f"{model.name} is no longer a ready reward model.")
            scorer = _scorer(model)
            scores = scorer.score(
                [i["dialogue"] for i in job.items], [i["response"] for i in job.items]
            )
    except Exception as exc:  # noqa: BLE001 - every failure ends the job with its reason
        logger.exception("score job %s failed", job_id)
        held.update(
            status=ScoreJob.Status.FAILED, error=_error_message(exc), finished_at=timezone.now()
        )
        return
    held.update(status=ScoreJob.Status.SUCCEEDED, scores=scores, finished_at=timezone.now())


# --- label checks ----------------------------------------------------------------------


def label_check_execute(*, batch_id: int, model_id: int, category: str) -> int:
    """Score both responses of every labelled ``category`` comparison of the batch with the
    reward model, and flag for review each label whose other response the model prefers
    with probability at least ``PAIRWISE_REVIEW_RM_CONFIDENCE`` (σ(r_other − r_preferred)).
    The flags replace the batch's earlier reward-model flags of that category. Returns how
    many labels were flagged; a batch frozen meanwhile is left alone (0)."""
    from annotation.review.services import (
        RewardModelContradiction,
        review_flags_replace_reward_model,
    )
    from modeling.ml.uncertainty import preference_probability

    batch = Batch.objects.get(pk=batch_id)
    model = ModelVersion.objects.get(pk=model_id)
    if batch.status == Batch.Status.FROZEN:
        logger.info("label check of %s skipped: frozen", batch.name)
        return 0
    if not (model.is_reward and model.is_ready):
        raise ValidationError(f"{model.name} is not a ready reward model.")
    labels = list(
        Label.objects.filter(comparison__batch=batch, comparison__category=category)
        .order_by("comparison_id", "id")
        .values_list("id", "comparison_id", "preferred")
    )
    comparisons = list(
        batch.comparisons.filter(pk__in={c for _, c, _ in labels})
        .order_by("id")
        .values_list("id", "prompt__turns", "response_a__text", "response_b__text")
    )
    scorer = _scorer(model)
    contexts = [turns for _, turns, _, _ in comparisons]
    rewards_a = scorer.score(contexts, [a for _, _, a, _ in comparisons])
    rewards_b = scorer.score(contexts, [b for _, _, _, b in comparisons])
    rewards = {
        c[0]: {"A": ra, "B": rb}
        for c, ra, rb in zip(comparisons, rewards_a, rewards_b, strict=True)
    }
    confidence = settings.PAIRWISE_REVIEW_RM_CONFIDENCE
    found = []
    for label_id, comparison_id, preferred in labels:
        mine = rewards[comparison_id][preferred]
        other = rewards[comparison_id]["B" if preferred == "A" else "A"]
        probability = preference_probability(other, mine)
        if probability >= confidence:
            found.append(RewardModelContradiction(label_id, probability, mine, other))
    try:
        return review_flags_replace_reward_model(
            batch=batch, category=category, model_name=model.name, contradictions=found
        )
    except ValidationError:
        if Batch.objects.filter(pk=batch.pk, status=Batch.Status.FROZEN).exists():
            return 0  # frozen while it was being scored: its review is final
        raise


# --- queue order by uncertainty --------------------------------------------------------


def queue_priorities_compute(*, batch_id: int) -> int:
    """Order a batch's queue by reward-model uncertainty: score both responses of each of
    its own comparisons (gold checks apart) with the newest ready reward model of its
    category (``margin``) or the ``PAIRWISE_QUEUE_ENSEMBLE_SIZE`` newest (``ensemble``,
    two at least), and store ``modeling.ml.uncertainty.uncertainty_scores`` as their
    priorities (``annotation.gold.services.comparison_priorities_set``). A category
    without the models it needs keeps priority 0 (after the scored ones, in arrival
    order); the batch's ``priorities_source`` says so. Returns how many priorities changed."""
    from annotation.gold.services import comparison_priorities_set
    from modeling.ml.uncertainty import uncertainty_scores
    from modeling.services import REWARD_KIND_OF_CATEGORY

    batch = Batch.objects.get(pk=batch_id)
    order = batch.queue_order
    if order == Batch.QueueOrder.ARRIVAL:
        return 0
    wanted = 1 if order == Batch.QueueOrder.MARGIN else settings.PAIRWISE_QUEUE_ENSEMBLE_SIZE
    own = batch.comparisons.filter(is_gold=False)
    priorities: dict[int, float] = {}
    sources = []
    for category in sorted(set(own.values_list("category", flat=True).distinct())):
        models = list(
            ModelVersion.objects.filter(
                kind=REWARD_KIND_OF_CATEGORY[category],
                status=ModelVersion.Status.READY,
                is_judge=False,
            ).order_by("-created_at", "-id")[:wanted]
        )
        if not models or (order == Batch.QueueOrder.ENSEMBLE and len(models) < 2):
            sources.append(f"{category}: too few ready reward models ({len(models)}), unscored")
            continue
        rows = list(
            own.filter(category=category)
            .order_by("id")
            .values_list("id", "prompt__turns", "response_a__text", "response_b__text")
        )
        contexts = [turns for _, turns, _, _ in rows]
        rewards_a, rewards_b = [], []
        for model in models:
            scorer = _scorer(model)
            rewards_a.append(scorer.score(contexts, [a for _, _, a, _ in rows]))
            rewards_b.append(scorer.score(contexts, [b for _, _, _, b in rows]))
        scores = uncertainty_scores(rewards_a, rewards_b, order=order)  # type: ignore[arg-type]
        priorities.update(zip([r[0] for r in rows], scores, strict=True))
        sources.append(f"{category}: {', '.join(m.name for m in models)}")
    changed = comparison_priorities_set(
        batch=batch, priorities=priorities, source=f"{order} — " + "; ".join(sources)
    )
    logger.info("queue of %s ordered by %s: %d priorities changed", batch.name, order, changed)
    return changed
