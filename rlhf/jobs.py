"""Worker-side code of the rlhf app: what a Celery worker runs, never a web request.

``stage_run`` runs one stage of an iteration (the stage bodies are in ``rlhf.stages``, the
adapters to the Django-free ML code in ``rlhf.ml``) and queues the next; ``live_turn_generate``
samples the two responses of a live-annotation turn; ``human_evaluation_build`` samples two
versions and opens a blind evaluation batch (``rlhf.human_evaluation``). torch is imported
only inside the functions that need it; web code reaches this module only through a Celery
message.
"""

from __future__ import annotations

import logging
import random
import traceback

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation import services as annotation_services
from annotation.domain import Category, Choice, Role, Turn
from annotation.importers import ResponseIn
from annotation.models import Batch
from annotation.queue import assignments
from config.leases import job_claim, job_heartbeat
from rlhf import live, services
from rlhf.models import HumanEvaluation, Iteration, IterationStage, LiveTurn
from rlhf.services import ITERATION_STAGES
from rlhf.settings import IterationSettings

logger = logging.getLogger(__name__)

LIVE_TEMPERATURES = (0.7, 1.0)
LIVE_MAX_NEW_TOKENS = 64


def stage_run(*, stage_id: int) -> None:
    """Run one stage to completion, then queue the next.

    A duplicate message, or one redelivered while another worker runs the stage (fresh
    heartbeat), does nothing. A stage whose worker died (stale heartbeat, ``config.leases``)
    starts again: stages write their outputs to ``*.partial`` folders and publish them with
    one rename, so a rerun never sees half of an earlier attempt.
    """
    from rlhf import stages as stage_impls

    stage = IterationStage.objects.select_related("iteration").get(pk=stage_id)
    if stage.iteration.status != Iteration.Status.RUNNING:
        return  # failed or finished meanwhile; resume re-queues explicitly
    earlier = stage.iteration.stages.filter(order__lt=stage.order).exclude(
        status__in=[IterationStage.Status.DONE, IterationStage.Status.SKIPPED]
    )
    if earlier.exists():
        raise ValidationError(f"{stage} cannot run before the stages ahead of it are done.")
    lease = job_claim(ITERATION_STAGES, stage_id, started_at=timezone.now(), error="")
    if lease is None:
        return  # done, not its turn, or running in a live worker
    stage.refresh_from_db()
    services.stage_log(stage_id, f"started (attempt {lease})", 0.0)
    try:
        with job_heartbeat(ITERATION_STAGES, stage_id, lease) as held:
            result = stage_impls.run(stage)
    except Exception as exc:  # noqa: BLE001 - every failure is shown in the page; resume retries
        if not held.lost:
            _stage_fail(stage_id, exc)
        return
    if held.lost:
        logger.warning("stage %s: attempt %s finished after being taken over", stage_id, lease)
        return
    with transaction.atomic():
        IterationStage.objects.filter(pk=stage_id, attempts=lease).update(
            status=IterationStage.Status.DONE,
            progress=1.0,
            result=result or {},
            finished_at=timezone.now(),
        )
        services.stage_log(stage_id, "done", 1.0)
        following = (
            IterationStage.objects.filter(
                iteration_id=stage.iteration_id,
                order__gt=stage.order,
                status=IterationStage.Status.PENDING,
            )
            .order_by("order")
            .first()
        )
        iteration = Iteration.objects.get(pk=stage.iteration_id)
        if following is not None and iteration.status == Iteration.Status.RUNNING:
            services.stage_enqueue(following)
        elif following is None and iteration.status == Iteration.Status.RUNNING:
            Iteration.objects.filter(pk=iteration.pk).update(
                status=Iteration.Status.ACCEPTED, finished_at=timezone.now()
            )


def _stage_fail(stage_id: int, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        stage = IterationStage.objects.get(pk=stage_id)
        IterationStage.objects.filter(pk=stage_id).update(
            status=IterationStage.Status.FAILED,
            error=message,
            finished_at=timezone.now(),
            log=stage.log + traceback.format_exc(limit=8),
        )
        Iteration.objects.filter(pk=stage.iteration_id).update(
            status=Iteration.Status.FAILED, error=f"{stage.get_name_display()} failed: {message}"
        )
    logger.warning("stage %s failed: %s", stage_id, message)


# --- live annotation ---------------------------------------------------------------------


def live_turn_generate(*, live_turn_id: int) -> None:
    """In the worker: two responses from the current policy, stored as a comparison."""
    from rlhf import selectors
    from rlhf.ml.generation.base import SamplingParams
    from rlhf.ml.generation.local import LocalGenerator, load_tokenizer_and_context
    from rlhf.ml.generation.remote import RemoteGenerator
    from rlhf.ml.prompt_fit import fit_prompts
    from rlhf.ml.prompts import PromptExample

    turn = LiveTurn.objects.select_related("session").get(pk=live_turn_id)
    if turn.status != LiveTurn.Status.GENERATING:
        return
    session = turn.session
    try:
        policy = selectors.policy_current()
        # The policy's own chat template and context, from its folder; sampled by the
        # inference server its iteration names (sampling.server_url), else here.
        tokenizer, context = load_tokenizer_and_context(policy.path)
        generator: LocalGenerator | RemoteGenerator
        if policy.server_url:
            generator = RemoteGenerator(policy.server_url, policy.name, tokenizer=tokenizer)
        else:
            generator = LocalGenerator.load(policy.path, name=policy.name)
        # A long conversation: the policy sees its end (the whole of it is stored and shown).
        fit = fit_prompts(
            [PromptExample(tuple(session.turns))],
            tokenizer,
            context=context,
            max_new_tokens=LIVE_MAX_NEW_TOKENS,
            policy="truncate_left",
        )
        cut = {"prompt_truncated_left": True} if fit.overlong else {}
        if fit.overlong:
            logger.info("live turn %s: %s", turn.pk, fit.message())
        outputs = [
            generator.generate(
                [fit.prompts[0].turns],
                SamplingParams(temperature=t, max_new_tokens=LIVE_MAX_NEW_TOKENS),
            )
            for t in LIVE_TEMPERATURES
        ]
        now = timezone.now()
        with transaction.atomic():
            batch = session.batch
            if batch.status not in (Batch.Status.DRAFT, Batch.Status.OPEN):
                batch = live.live_batch_get_or_create()
            comparison = annotation_services.comparison_create(
                batch=batch,
                turns=[Turn(Role(t["role"]), t["content"]) for t in session.turns],
                response_a=ResponseIn(
                    outputs[0].samples[0][0].text or "(empty)",
                    policy.name,
                    {**outputs[0].params.as_provenance(), **cut},
                    now,
                ),
                response_b=ResponseIn(
                    outputs[1].samples[0][0].text or "(empty)",
                    policy.name,
                    {**outputs[1].params.as_provenance(), **cut},
                    now,
                ),
                category=Category.HELPFULNESS,
                source="live",
                created_by=session.annotator,
                metadata={"live_session": session.pk},
            )
            if batch.status == Batch.Status.DRAFT:
                annotation_services.batch_transition(batch=batch, to=Batch.Status.OPEN)
            assignments.assignment_create_for(
                comparison=comparison,
                annotator=session.annotator,
                left=random.choice([Choice.A, Choice.B]),
            )
            LiveTurn.objects.filter(pk=turn.pk).update(
                status=LiveTurn.Status.READY, comparison=comparison
            )
    except Exception as exc:  # noqa: BLE001 - shown to the annotator in the page
        LiveTurn.objects.filter(pk=turn.pk).update(
            status=LiveTurn.Status.FAILED, error=f"{type(exc).__name__}: {exc}"
        )


# --- human evaluation ------------------------------------------------------------------


def human_evaluation_build(*, evaluation_id: int) -> None:
    """In a worker: sample both versions, score them, open the blind batch. A build that
    was already done is left alone; any failure is recorded on the evaluation."""
    evaluation = HumanEvaluation.objects.select_related("iteration").get(pk=evaluation_id)
    if evaluation.status != HumanEvaluation.Status.QUEUED:
        return
    try:
        batch = _build(evaluation)
    except Exception as exc:  # noqa: BLE001 - every failure is shown on the evaluation's page
        logger.exception("human evaluation %s failed", evaluation_id)
        HumanEvaluation.objects.filter(pk=evaluation_id).update(
            status=HumanEvaluation.Status.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
        return
    HumanEvaluation.objects.filter(pk=evaluation_id).update(
        status=HumanEvaluation.Status.OPEN, batch=batch, error=""
    )


def _build(evaluation: HumanEvaluation) -> Batch:
    from rlhf import stages
    from rlhf.ml.generation.base import SamplingParams

    iteration = evaluation.iteration
    config = IterationSettings.from_json(iteration.config)
    held_out = stages.iteration_prompts(iteration, config).held_out
    prompts = held_out[: evaluation.n_prompts]
    dialogues = [p.turns for p in prompts]
    params = SamplingParams(
        temperature=1.0, max_new_tokens=config.sampling.max_new_tokens, seed=config.seed
    )
    candidate = stages.policy_load(evaluation.candidate_path).generate(dialogues, params)
    baseline = stages.policy_load(evaluation.baseline_path).generate(dialogues, params)
    cand_texts = [row[0].text for row in candidate.samples]
    base_texts = [row[0].text for row in baseline.samples]
    margins: list[float | None] = [None] * len(prompts)
    if iteration.reward_helpfulness_path and iteration.reward_safety_path:
        reward = stages.reward_proxies(iteration)
        contexts = [list(p.turns) for p in prompts]
        tags = [p.safety_tagged for p in prompts]
        c = reward(contexts, cand_texts, tags)
        b = reward(contexts, base_texts, tags)
        margins = [ci - bi for ci, bi in zip(c, b, strict=True)]
    rng = random.Random(f"human-evaluation-{evaluation.pk}")
    now = timezone.now()
    created = 0
    with transaction.atomic():
        batch = annotation_services.batch_create(
            name=f"Blind evaluation #{evaluation.pk}",
            description="Two model versions, unnamed and in random order. Pick the better response.",
            iteration=iteration.number,
            purpose=Batch.Purpose.EVALUATION,
            created_by=evaluation.created_by,
        )
        rows = zip(prompts, cand_texts, base_texts, margins, strict=True)
        for prompt, cand_text, base_text, margin in rows:
            if not cand_text.strip() or not base_text.strip() or cand_text == base_text:
                continue  # nothing to choose between
            candidate_side = rng.choice([Choice.A, Choice.B])
            first = ResponseIn(
                cand_text, evaluation.candidate_name, candidate.params.as_provenance(), now
            )
            second = ResponseIn(
                base_text, evaluation.baseline_name, baseline.params.as_provenance(), now
            )
            a, b = (first, second) if candidate_side is Choice.A else (second, first)
            annotation_services.comparison_create(
                batch=batch,
                turns=[Turn(Role(t["role"]), t["content"]) for t in prompt.turns],
                response_a=a,
                response_b=b,
                category=Category.SAFETY if prompt.safety_tagged else Category.HELPFULNESS,
                source="evaluation",
                metadata={
                    "evaluation": {
                        "id": evaluation.pk,
                        "candidate": str(candidate_side),
                        "reward_margin": margin,
                    }
                },
            )
            created += 1
        if created == 0:
            raise ValueError(
                "Every pair was empty or identical: the two versions gave nothing to compare."
            )
        annotation_services.batch_transition(batch=batch, to=Batch.Status.OPEN)
    return batch
