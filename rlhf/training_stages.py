"""The stages of the policy-training methods beyond rejection sampling and PPO (SFT, DPO,
online DPO, RRHF, PRO, GRPO, RLOO): adapters between the ORM and the Django-free trainers
in ``rlhf/ml/`` (``rlhf.methods`` lists what each needs).

Every one runs the same way (``_train``): it starts from the checkpoint of the training
stage before it (or the iteration's parent), scales the learning rate to the policy's
size as the other methods do, trains with a resumable state in the iteration's folder (a
worker killed mid-stage leaves it; the rerun continues at the step it reached, with the
same step count), writes each step's metrics into the stage's result as it goes (the
pipeline page plots them), and publishes the finished policy folder atomically. Heavy
imports happen inside the functions, in the worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from annotation.domain import Role, Turn, margin_for
from annotation.importers import turns_hash
from annotation.selectors import preference_pairs_frozen
from modeling.ml.lora import lora_summary
from rlhf.methods import TRAINING_STAGES
from rlhf.models import Iteration, IterationStage
from rlhf.settings import IterationSettings
from rlhf.stages import (
    Report,
    StageError,
    _did_not_move,
    _load_policy,
    _reporter,
    _reward,
    _sampler,
    _scaled_learning_rate,
    iteration_prompts,
    policy_dir,
)

if TYPE_CHECKING:
    from rlhf.ml.ranked import RankedSamples

Stage = IterationStage.Name


def training_start(iteration: Iteration, stage: IterationStage) -> str:
    """The checkpoint a training stage starts from: that of the last training stage before
    it that finished (rejection sampling, then DPO), else the iteration's parent."""
    earlier = (
        iteration.stages.filter(
            order__lt=stage.order, name__in=TRAINING_STAGES, status=IterationStage.Status.DONE
        )
        .order_by("-order")
        .first()
    )
    return earlier.result["checkpoint"] if earlier is not None else iteration.start_policy_path


class _StepLog:
    """Each optimizer step's metrics: into the stage's result as they come (at most every
    ``every`` seconds), and a line in its log. On a rerun, the steps an earlier attempt
    wrote are kept up to the step the resumed state starts from."""

    def __init__(
        self,
        stage: IterationStage,
        report: Report,
        total_of: Callable[[], int],
        every: float = 2.0,
    ) -> None:
        self.stage, self.report, self.every = stage, report, every
        self.steps: list[dict] = list((stage.result or {}).get("steps") or [])
        self.total_of = total_of
        self.last = 0.0

    def resumed_at(self, step: int) -> None:
        self.steps = [s for s in self.steps if s.get("step", 0) <= step]
        if step:
            self.report(f"resumed from the saved state at step {step}", force=True)

    def __call__(self, stats: dict) -> None:
        self.steps.append(_plain(stats))
        total = stats.get("total") or self.total_of() or 1
        shown = ", ".join(
            f"{k} {v:.3f}"
            for k, v in stats.items()
            if k not in ("step", "total", "seconds", "timings") and isinstance(v, int | float)
        )
        self.report(f"step {stats['step']}/{total}: {shown}", 0.1 + 0.85 * stats["step"] / total)
        now = time.monotonic()
        if now - self.last >= self.every or stats["step"] >= total:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        IterationStage.objects.filter(pk=self.stage.pk).update(
            result={"steps": self.steps, "running": True}
        )


def _plain(stats: dict) -> dict:
    """JSON-safe copy of a step's stats (floats, ints, nested dicts of them)."""
    out: dict[str, Any] = {}
    for k, v in stats.items():
        if isinstance(v, dict):
            out[k] = _plain(v)
        elif isinstance(v, bool | int | str) or v is None:
            out[k] = v
        else:
            out[k] = float(v)
    return out


def _train(
    iteration: Iteration,
    stage: IterationStage,
    config: IterationSettings,
    *,
    section: str,
    ceiling: float,
    make_trainer: Callable[[Any, str], Any],
    data: Callable[[], Sequence],
    extra: dict | None = None,
) -> dict:
    """The shared body of a training stage: ``make_trainer(section config, start path)``
    builds the trainer, ``data()`` gives what it trains on (made first: sampling loads a
    model of its own, gone before the trainer loads)."""
    from rlhf.ml.ppo.experience import NonFiniteError
    from rlhf.ml.scale import parameter_count
    from rlhf.ml.train_state import TrainState

    report = _reporter(stage)
    start = training_start(iteration, stage)
    if not (Path(start) / "config.json").is_file():
        raise StageError(
            f"No policy checkpoint at {start} to start {stage.get_name_display()} from."
        )
    section_config, learning_rate = _scaled_learning_rate(
        getattr(config, section), parameter_count(start), config, report, ceiling=ceiling
    )
    items = data()
    trainer = make_trainer(section_config, start)
    log = _StepLog(stage, report, lambda: trainer.total_steps(len(items)))
    # The steps so far go into the stage's result with every saved state: a rerun resumed
    # from it has each step before it.
    state = TrainState(
        policy_dir(iteration) / f"{stage.name}.state",
        section_config.checkpoint_every,
        on_save=log.flush,
    )
    total = trainer.total_steps(len(items))
    report(
        f"training {total} step(s) on {len(items)} item(s) from {Path(start).name}", 0.1, force=True
    )
    first_call = [True]

    def on_step(stats: dict) -> None:
        if first_call[0]:
            first_call[0] = False
            log.resumed_at(stats["step"] - 1)
        log(stats)

    try:
        trainer.train(items, on_step=on_step, state=state)
    except NonFiniteError as exc:
        raise StageError(
            f"{exc} Lower {section}.learning_rate (or {section}.beta) and resume; the saved "
            "state before it is kept."
        ) from None
    except ValueError as exc:
        raise StageError(str(exc)) from None
    checkpoint = trainer.save(policy_dir(iteration) / stage.name)
    state.clear()
    steps = log.steps
    losses = [s["loss"] for s in steps if "loss" in s]
    return {
        "started_from": str(start),
        "steps": steps,
        "checkpoint": str(checkpoint),
        "note": _did_not_move(report, losses=losses, kls=[s["kl"] for s in steps if "kl" in s]),
        "learning_rate": learning_rate,
        **(extra or {}),
        **lora_summary(section_config.lora),
    }


# --- SFT ------------------------------------------------------------------------------------


def sft(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
    """Fine-tune the parent on the batches' demonstrations (loss on the response only)."""
    from annotation.selectors import demonstrations_for_batches
    from rlhf.ml.scale import REJECTION_SAMPLING_CEILING
    from rlhf.ml.sft.trainer import SFTTrainer

    examples = demonstrations_for_batches(list(iteration.batches.values_list("pk", flat=True)))
    if not examples:
        raise StageError(
            f"The batches of {iteration} hold no demonstrations; SFT trains on demonstrations "
            "(import them, or write them in the live page), not on comparisons."
        )
    return _train(
        iteration,
        stage,
        config,
        section="sft",
        ceiling=REJECTION_SAMPLING_CEILING,
        make_trainer=lambda cfg, start: SFTTrainer.from_pretrained(start, cfg),
        data=lambda: [(list(turns), response) for turns, response in examples],
        extra={"demonstrations": len(examples)},
    )


# --- DPO ------------------------------------------------------------------------------------


def dpo_pairs(iteration: Iteration, config: IterationSettings) -> tuple[list, dict]:
    """The human pairs of the iteration's batches as DPO pairs, without the held-out
    prompts (the evaluation's), each with the margin of its strength when the settings
    use it; and counts for the stage's result."""
    from rlhf.ml.dpo.data import PreferencePair

    held_out = iteration_prompts(iteration, config).held_out_hashes
    batch_ids = list(iteration.batches.values_list("pk", flat=True))
    pairs, left_out = [], 0
    for pair in preference_pairs_frozen(batch_ids=batch_ids):
        turns = tuple(Turn(Role(t.role), t.content) for t in pair.context)
        if turns_hash(turns) in held_out:
            left_out += 1
            continue
        margin = margin_for(pair.strength) if (config.dpo.use_margin and pair.strength) else 0.0
        pairs.append(
            PreferencePair(tuple(t.as_dict() for t in turns), pair.chosen, pair.rejected, margin)
        )
    if not pairs:
        raise StageError(
            f"The batches of {iteration} hold no labelled pairs outside the held-out prompts "
            f"({left_out} left out); DPO trains on labelled comparisons."
        )
    return pairs, {"pairs": len(pairs), "held_out_pairs_left_out": left_out}


def dpo(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
    """DPO (or IPO / robust DPO, ``dpo.loss_type``) on the human pairs of the batches; the
    reference is the starting checkpoint (or ``dpo.reference_path``), its log-probabilities
    computed once before training."""
    from rlhf.ml.dpo.trainer import DPOTrainer
    from rlhf.ml.scale import PPO_CEILING

    pairs, counts = dpo_pairs(iteration, config)
    reference = config.dpo_reference_path or None
    if reference and not (Path(reference) / "config.json").is_file():
        raise StageError(f"No reference model at {reference} (dpo_reference_path).")
    return _train(
        iteration,
        stage,
        config,
        section="dpo",
        ceiling=PPO_CEILING,
        make_trainer=lambda cfg, start: _dpo_trainer(DPOTrainer, start, cfg, reference),
        data=lambda: pairs,
        extra=counts,
    )


def _dpo_trainer(cls: Any, start: str, cfg: Any, reference: str | None) -> Any:
    try:
        return cls.from_pretrained(start, cfg, reference_path=reference)
    except ValueError as exc:  # e.g. a reference on another tokenizer
        raise StageError(str(exc)) from None


# --- methods that train on K ranked samples of their own --------------------------------------


def _ranked_samples(
    iteration: Iteration,
    stage: IterationStage,
    config: IterationSettings,
    cfg: Any,
    start: str,
    report: Report,
) -> list[RankedSamples]:
    """K samples per training prompt from the starting policy, ranked by the combined
    reward; kept in the iteration's folder, so a rerun trains on the same samples."""
    from rlhf.ml.generation.base import SamplingParams
    from rlhf.ml.prompts import PromptExample
    from rlhf.ml.ranked import RankedSamples, sample_ranked

    path = policy_dir(iteration) / f"{stage.name}.samples.json"
    if path.is_file():
        rows = json.loads(path.read_text())
        report(f"reusing the {len(rows)} prompts' samples of an earlier attempt", 0.05, force=True)
        return [
            RankedSamples(
                PromptExample(tuple(r["turns"]), r["safety_tagged"]),
                tuple(r["responses"]),
                tuple(r["rewards"]),
            )
            for r in rows
        ]
    prompts = iteration_prompts(iteration, config).train
    report(f"sampling {cfg.num_samples} per prompt for {len(prompts)} prompts", 0.02, force=True)
    params = SamplingParams(
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=config.sampling.max_new_tokens,
        seed=config.seed,
    )
    if config.sampling.server_url:
        sampled = sample_ranked(
            None,
            None,
            prompts,
            _reward(iteration),
            k=cfg.num_samples,
            params=params,
            generator=_sampler(start, f"{iteration.name}:{stage.name}-start", config),
        )
    else:
        policy = _load_policy(start)
        sampled = sample_ranked(
            policy.model,
            policy.tokenizer,
            prompts,
            _reward(iteration),
            k=cfg.num_samples,
            params=params,
        )
        del policy
    rows = [
        {
            "turns": list(r.prompt.turns),
            "safety_tagged": r.prompt.safety_tagged,
            "responses": list(r.responses),
            "rewards": list(r.rewards),
        }
        for r in sampled.ranked
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.replace(path)
    return sampled.ranked


def _sample_stats(ranked: Sequence[RankedSamples]) -> dict:
    best = [r.rewards[0] for r in ranked]
    mean = [sum(r.rewards) / len(r.rewards) for r in ranked]
    return {
        "prompts": len(ranked),
        "mean_best_reward": sum(best) / len(best) if best else None,
        "mean_reward": sum(mean) / len(mean) if mean else None,
    }


def online_dpo(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
    """Iterative DPO: K samples per prompt from the policy, best against worst by the
    combined reward, then DPO on those pairs."""
    from rlhf.ml.dpo.online import online_pairs
    from rlhf.ml.dpo.trainer import DPOTrainer
    from rlhf.ml.scale import PPO_CEILING

    report = _reporter(stage)
    holder: dict = {}

    def data() -> list:
        ranked = _ranked_samples(
            iteration, stage, config, config.online_dpo, training_start(iteration, stage), report
        )
        pairs = online_pairs(ranked)
        if not pairs:
            raise StageError(
                "Every prompt's best and worst samples got the same reward: no pairs to learn "
                "from. Raise online_dpo.num_samples or online_dpo.temperature."
            )
        holder.update(_sample_stats(ranked), pairs=len(pairs), tied=len(ranked) - len(pairs))
        return pairs

    result = _train(
        iteration,
        stage,
        config,
        section="online_dpo",
        ceiling=PPO_CEILING,
        make_trainer=lambda cfg, start: _dpo_trainer(DPOTrainer, start, cfg, None),
        data=data,
    )
    return {**result, **holder}


StageFn = Callable[[Iteration, IterationStage, IterationSettings], dict]


def _ranking(loss: Literal["rrhf", "pro"]) -> StageFn:
    def stage_fn(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
        from rlhf.ml.ranking.trainer import RankingTrainer
        from rlhf.ml.scale import REJECTION_SAMPLING_CEILING

        report = _reporter(stage)
        holder: dict = {}

        def data() -> list:
            ranked = _ranked_samples(
                iteration,
                stage,
                config,
                getattr(config, loss),
                training_start(iteration, stage),
                report,
            )
            holder.update(_sample_stats(ranked))
            return ranked

        result = _train(
            iteration,
            stage,
            config,
            section=loss,
            ceiling=REJECTION_SAMPLING_CEILING,
            make_trainer=lambda cfg, start: RankingTrainer.from_pretrained(start, cfg, loss=loss),
            data=data,
        )
        return {**result, **holder}

    stage_fn.__name__ = loss
    stage_fn.__doc__ = f"{loss.upper()} on K samples per prompt ranked by the combined reward."
    return stage_fn


rrhf = _ranking("rrhf")
pro = _ranking("pro")


# --- online, critic-free ----------------------------------------------------------------------


def _group_method(section: Literal["grpo", "rloo"]) -> StageFn:
    def stage_fn(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
        from rlhf.ml.grpo.trainer import GRPOTrainer
        from rlhf.ml.scale import PPO_CEILING

        reward = _reward(iteration)
        prompts = iteration_prompts(iteration, config).train
        return _train(
            iteration,
            stage,
            config,
            section=section,
            ceiling=PPO_CEILING,
            make_trainer=lambda cfg, start: GRPOTrainer.from_pretrained(start, cfg, reward=reward),
            data=lambda: prompts,
        )

    stage_fn.__name__ = section
    stage_fn.__doc__ = (
        f"{section.upper()}: G samples per prompt each step, the combined reward against the "
        "group's baseline, clipped ratio and KL to the starting policy."
    )
    return stage_fn


grpo = _group_method("grpo")
rloo = _group_method("rloo")


HANDLERS = {
    Stage.SFT: sft,
    Stage.DPO: dpo,
    Stage.ONLINE_DPO: online_dpo,
    Stage.RRHF: rrhf,
    Stage.PRO: pro,
    Stage.GRPO: grpo,
    Stage.RLOO: rloo,
}
