"""What each stage of an iteration does: adapters between the ORM and the Django-free ML
modules (generation, rejection sampling, PPO, evaluation). Heavy imports happen inside
the functions, in the worker, never when the web app imports this module.

Each function takes the stage, does its work, and returns a JSON result for the stage
row. Outputs on disk go through ``*.partial`` folders renamed when whole.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from annotation import services as annotation_services
from annotation.domain import Category, Role, Turn
from annotation.importers import ResponseIn, turns_hash
from annotation.models import Batch, Comparison
from modeling.ml.lora import lora_summary
from rlhf.ml.prompt_fit import PromptFit, fit_prompts
from rlhf.ml.prompts import PromptExample
from rlhf.models import Iteration, IterationStage, PolicyEvaluation
from rlhf.settings import IterationSettings

Stage = IterationStage.Name


class StageError(RuntimeError):
    """A stage cannot go on; the message is shown in the pipeline page."""


def run(stage: IterationStage) -> dict:
    from rlhf import training_stages

    handler = {**HANDLERS, **training_stages.HANDLERS}[Stage(stage.name)]
    iteration = Iteration.objects.get(pk=stage.iteration_id)
    return handler(iteration, stage, IterationSettings.from_json(iteration.config))


class Report(Protocol):
    """A stage's log line and progress; ``force`` writes it even within ``every`` seconds
    of the last."""

    def __call__(
        self, message: str, progress: float | None = None, force: bool = False
    ) -> None: ...


def _reporter(stage: IterationStage, every: float = 1.0) -> Report:
    from rlhf.services import stage_log

    last = [0.0]

    def report(message: str, progress: float | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - last[0] >= every:
            last[0] = now
            stage_log(stage.pk, message, progress)

    return report


# --- prompts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IterationPrompts:
    """The iteration's prompts, split and fitted to the policy's context."""

    train: list[PromptExample]
    held_out: list[PromptExample]
    fit: PromptFit  # what fitting did to the over-long ones (``fit.message()``)
    train_original: list[PromptExample]  # train[i] before fitting: what a new batch stores
    # content hashes of the held-out prompts (before fitting): training data from the
    # batches themselves (DPO's pairs) leaves these prompts out
    held_out_hashes: frozenset[str] = frozenset()

    def log(self, report) -> dict:
        """Say in the stage's log what fitting did; the stage result's "prompts" entry."""
        if self.fit.overlong:
            report(self.fit.message(), force=True)
        return self.fit.as_json()


def iteration_prompts(iteration: Iteration, config: IterationSettings) -> IterationPrompts:
    """Training and held-out prompts from the iteration's frozen batches, each fitted to the
    policy's context (``sampling.overlong_prompts``) before any stage samples them.

    The split is by prompt content hash, so the same prompt is held out in every stage and
    every rerun; it is made before fitting, so leaving prompts out never moves one across."""
    from rlhf.ml.generation.local import load_tokenizer_and_context

    rows = (
        Comparison.objects.filter(batch__in=iteration.batches.all())
        .values_list("prompt__content_hash", "prompt__turns", "category")
        .order_by("prompt__content_hash")
    )
    by_hash: dict[str, PromptExample] = {}
    for content_hash, turns, category in rows:
        tagged = category == Category.SAFETY or (
            content_hash in by_hash and by_hash[content_hash].safety_tagged
        )
        by_hash[content_hash] = PromptExample(tuple(turns), tagged)
    by_hash = dict(sorted({**by_hash, **_demonstration_prompts(iteration, by_hash)}.items()))
    prompts = list(by_hash.values())[: config.max_prompts]
    hashes = list(by_hash)[: config.max_prompts]
    if len(prompts) < 2:
        raise StageError(
            f"The batches of {iteration} hold {len(prompts)} prompt(s); at least 2 are needed "
            "(some for training, some held out)."
        )
    n_held_out = max(1, round(config.eval_fraction * len(prompts)))
    tokenizer, context = load_tokenizer_and_context(iteration.start_policy_path)
    try:
        fit = fit_prompts(
            prompts,
            tokenizer,
            context=context,
            max_new_tokens=config.sampling.max_new_tokens,
            policy=config.sampling.overlong_prompts,
        )
    except ValueError as exc:
        raise StageError(str(exc)) from None
    held_out = [p for i, p in zip(fit.kept, fit.prompts, strict=True) if i < n_held_out]
    train = fit.prompts[len(held_out) :]
    train_original = [prompts[i] for i in fit.kept[len(held_out) :]]
    if not train or not held_out:
        raise StageError(
            f"{fit.message()} That leaves {len(train)} training and {len(held_out)} held-out "
            "prompt(s); set sampling.overlong_prompts to truncate_left to keep the end of them."
        )
    return IterationPrompts(train, held_out, fit, train_original, frozenset(hashes[:n_held_out]))


def _demonstration_prompts(iteration: Iteration, known: dict) -> dict[str, PromptExample]:
    """The prompts of the batches' demonstrations that no comparison has (an SFT
    iteration's batches may hold demonstrations only), by content hash."""
    from annotation.models import Demonstration

    rows = (
        Demonstration.objects.filter(batch__in=iteration.batches.all())
        .exclude(prompt__content_hash__in=list(known))
        .values_list("prompt__content_hash", "prompt__turns")
        .order_by("prompt__content_hash")
    )
    return {h: PromptExample(tuple(turns), False) for h, turns in rows}


def _reward(iteration: Iteration):
    from rlhf.ml.rewards import CombinedReward
    from rlhf.ml.scoring import load_score_fn

    if not iteration.reward_helpfulness_path or not iteration.reward_safety_path:
        raise StageError("The reward models are not set; run the reward-model stage first.")
    return CombinedReward(
        load_score_fn(iteration.reward_helpfulness_path),
        load_score_fn(iteration.reward_safety_path),
    )


def _checkpoint_required(path: str | Path) -> None:
    if not (Path(path) / "config.json").exists():
        raise StageError(f"No policy checkpoint at {path}.")


def _load_policy(path: str | Path):
    from rlhf.ml.generation.local import LocalGenerator

    _checkpoint_required(path)
    return LocalGenerator.load(path)


def _sampler(path: str | Path, name: str, config: IterationSettings):
    """What samples the policy at ``path``, registered as ``name``: the inference server of
    ``sampling.server_url`` (serving it under that name) when set, else this worker. Both
    render prompts in the policy's own chat template (its local tokenizer)."""
    if not config.sampling.server_url:
        return _load_policy(path)
    from modeling.ml.tokenizer import tokenizer_load
    from rlhf.ml.generation.remote import RemoteGenerator

    return RemoteGenerator(config.sampling.server_url, name, tokenizer=tokenizer_load(path))


def policy_load(path: str | Path):
    """A local generator for the policy checkpoint at ``path`` (StageError if none)."""
    return _load_policy(path)


def reward_proxies(iteration: Iteration):
    """The combined reward of the iteration's two reward models: what its policy was
    optimised against."""
    return _reward(iteration)


# --- stages ----------------------------------------------------------------------------


def reward_models(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
    """Use the reward models named in the settings, or the previous iteration's, or train
    them from the batches with the modeling app; check each folder holds a reward model. One
    on another tokenizer than the policy scores the policy's decoded text (logged)."""
    from rlhf.ml.scoring import NotARewardModelError, reward_model_check

    report = _reporter(stage)
    helpful, safety = config.reward_helpfulness_path, config.reward_safety_path
    if not (helpful and safety):
        previous = (
            Iteration.objects.filter(number__lt=iteration.number)
            .exclude(reward_safety_path="")
            .first()
        )
        helpful, safety = _reward_models_train(iteration, report, previous)
    for path in (helpful, safety):
        if not Path(path).is_dir():
            raise StageError(f"The reward model folder {path} does not exist.")
        try:
            note = reward_model_check(path, iteration.start_policy_path)
        except NotARewardModelError as exc:
            raise StageError(str(exc)) from None
        if note:
            report(note, force=True)
    Iteration.objects.filter(pk=iteration.pk).update(
        reward_helpfulness_path=str(helpful), reward_safety_path=str(safety)
    )
    report(f"helpfulness RM {helpful}; safety RM {safety}", 1.0, force=True)
    return {"reward_helpfulness_path": str(helpful), "reward_safety_path": str(safety)}


def _reward_models_train(
    iteration: Iteration, report, previous: Iteration | None
) -> tuple[str, str]:
    """Train both RMs on the iteration's batches with the modeling app, in this worker.

    A rerun reuses a reward model an earlier attempt finished (found by name), and resumes
    one an interrupted attempt left unfinished (from its last checkpoint)."""
    from modeling import jobs as modeling_jobs
    from modeling import services as modeling_services
    from modeling.models import ModelVersion, TrainingRun
    from modeling.selectors import base_model_latest

    base = base_model_latest()
    if base is None:
        if previous is not None:
            report(
                f"no base model registered; reusing the reward models of {previous}",
                0.5,
                force=True,
            )
            return previous.reward_helpfulness_path, previous.reward_safety_path
        raise StageError(
            "No reward models: create the base model first (Models page or "
            "`manage.py pairwise_create_base_model`), or set reward_helpfulness_path and "
            "reward_safety_path in the iteration settings."
        )
    config = IterationSettings.from_json(iteration.config)
    batch_ids = list(iteration.batches.values_list("pk", flat=True))
    paths = []
    for i, kind in enumerate(("helpfulness", "safety")):
        name = f"RM-{kind}-for-{iteration.name}"
        done = ModelVersion.objects.filter(name=name, status=ModelVersion.Status.READY).first()
        if done is None:
            unfinished = [
                r
                for r in TrainingRun.objects.filter(
                    result_name__startswith=name,
                    status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING],
                ).order_by("-pk")
                if re.fullmatch(rf"{re.escape(name)}(-\d+)?", r.result_name)
            ]
            if unfinished:
                run = unfinished[0]
            else:
                attempt = ModelVersion.objects.filter(name__startswith=name).count()
                run = modeling_services.reward_model_launch(
                    kind=kind,
                    base_model=base,
                    batch_ids=batch_ids,
                    name=name if attempt == 0 else f"{name}-{attempt}",
                    config=config.reward_training,
                    enqueue=False,
                )
            report(
                f"training the {kind} reward model ({run.result_name}) from {base.name}",
                0.1 + 0.4 * i,
                force=True,
            )
            run = modeling_jobs.training_run_finish(run_id=run.pk)
            if run.status != TrainingRun.Status.SUCCEEDED:
                raise StageError(f"Training the {kind} reward model failed: {run.error}")
            done = ModelVersion.objects.get(pk=run.result_id)
        paths.append(done.path)
        report(
            f"{kind} reward model {done.name}: {done.metrics.get('accuracy', '')}",
            0.5 + 0.4 * i,
            force=True,
        )
    return paths[0], paths[1]


def rejection_sampling(
    iteration: Iteration, stage: IterationStage, config: IterationSettings
) -> dict:
    from rlhf.ml.rejection_sampling.run import run_rejection_sampling

    report = _reporter(stage)
    selected = iteration_prompts(iteration, config)
    fitted = selected.log(report)
    train_prompts = selected.train
    policy = _load_policy(iteration.start_policy_path)
    from rlhf.ml.scale import REJECTION_SAMPLING_CEILING

    rs_config, learning_rate = _scaled_learning_rate(
        config.rejection_sampling,
        sum(p.numel() for p in policy.model.parameters()),
        config,
        report,
        ceiling=REJECTION_SAMPLING_CEILING,
    )
    if not rs_config.bf16:
        policy.model.float()  # on CUDA the policy loads in bf16 (on CPU it is float32)
    monitor = _probe_monitor(iteration, config)
    sample = _probe_sampler(policy.model, policy.tokenizer, config)
    if monitor.due(0, 1):
        monitor.probe(0, 0.0, sample)
    report(
        f"sampling {rs_config.num_samples} per prompt for {len(train_prompts)} prompts",
        0.05,
        force=True,
    )
    result = run_rejection_sampling(
        policy.model,
        policy.tokenizer,
        train_prompts,
        _reward(iteration),
        rs_config,
        policy_dir(iteration) / "rejection_sampling",
        on_progress=lambda what, fraction: report(what, fraction),
        generator=_sampler(iteration.start_policy_path, iteration.start_policy_name, config)
        if config.sampling.server_url
        else None,
    )
    summary = result.summary()
    report(
        f"best-of-{rs_config.num_samples} mean reward {summary['mean_best_reward']:.3f}; "
        f"fine-tuning loss {summary['sft_loss_first']:.3f} → {summary['sft_loss_last']:.3f}",
        1.0,
        force=True,
    )
    note = _did_not_move(report, losses=result.sft_losses)
    if monitor.due(1, 1):
        _rejection_sampling_probe(monitor, policy, iteration.start_policy_path, sample)
    return {
        **summary,
        "checkpoint": str(result.checkpoint),
        "note": note,
        "monitor": _monitor_result(monitor, report),
        "prompt_fit": fitted,
        "learning_rate": learning_rate,
        **lora_summary(rs_config.lora),
    }


def ppo(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
    from rlhf.ml.ppo.trainer import PPOTrainer

    report = _reporter(stage)
    selected = iteration_prompts(iteration, config)
    fitted = selected.log(report)
    train_prompts = selected.train
    from rlhf.training_stages import training_start

    start = training_start(iteration, stage)
    from rlhf.ml.scale import PPO_CEILING, parameter_count

    _checkpoint_required(start)
    ppo_config, learning_rate = _scaled_learning_rate(
        config.ppo, parameter_count(start), config, report, ceiling=PPO_CEILING
    )
    trainer = PPOTrainer.from_pretrained(start, _reward(iteration), ppo_config)
    monitor = _probe_monitor(iteration, config)
    sample = _probe_sampler(trainer.policy.lm, trainer.tokenizer, config)
    if monitor.due(0, config.ppo.steps):
        monitor.probe(0, 0.0, sample)
    steps = []

    def on_step(stats) -> None:
        steps.append(stats.as_dict())
        probed = ""
        if monitor.due(stats.step, config.ppo.steps):
            point = monitor.probe(stats.step, stats.kl, sample)
            probed = f"; probe: proxy {point.proxy:.3f}" + (
                f", judge {point.judge:.3f}" if point.judge is not None else ""
            )
        report(
            f"step {stats.step}/{config.ppo.steps}: reward {stats.reward:.3f}, KL {stats.kl:.3f}, "
            f"entropy {stats.entropy:.3f}, value loss {stats.value_loss:.3f}, clip {stats.clip_fraction:.2f}"
            + probed,
            stats.step / config.ppo.steps,
            force=True,
        )

    trainer.train(train_prompts, on_step=on_step)
    checkpoint = trainer.save(policy_dir(iteration) / "ppo")
    return {
        "started_from": str(start),
        "steps": steps,
        "checkpoint": str(checkpoint),
        "monitor": _monitor_result(monitor, report),
        "note": _did_not_move(report, kls=[s["kl"] for s in steps]),
        "prompt_fit": fitted,
        "learning_rate": learning_rate,
        **lora_summary(ppo_config.lora),
    }


def _scaled_learning_rate(
    method_config: Any, n_params: int, config: IterationSettings, report: Report, *, ceiling: float
) -> tuple[Any, dict]:
    """``method_config`` (any method's section) with its learning rate scaled to a policy of
    ``n_params`` parameters, at most ``ceiling``, when it was left at the paper's value and
    the settings allow it (``scale_learning_rates``); and what was used, for the stage's
    result."""
    from dataclasses import fields, replace

    from rlhf.ml.scale import scaled_learning_rate

    paper = float(
        next(f.default for f in fields(method_config) if f.name == "learning_rate")  # type: ignore[arg-type]
    )
    used = method_config.learning_rate
    if config.scale_learning_rates and used == paper:
        used = scaled_learning_rate(paper, n_params, ceiling=ceiling)
        method_config = replace(method_config, learning_rate=used)
        report(
            f"learning rate {used:.2g}: the paper's {paper:g} (set for 7-70B models) scaled to "
            f"this policy's {n_params / 1e6:.1f}M parameters",
            force=True,
        )
    return method_config, {"used": used, "paper": paper, "parameters": n_params}


def _probe_monitor(iteration: Iteration, config: IterationSettings):
    """The over-optimisation monitor of a training stage: the first held-out prompts,
    scored by the proxies and by the judge (when one is independent of the proxies)."""
    from rlhf import judges
    from rlhf.ml.monitor import ProbeMonitor
    from rlhf.ml.scoring import load_score_fn

    settings = config.evaluation
    held_out = iteration_prompts(iteration, config).held_out
    try:
        judge = judges.judge_for_iteration(iteration, settings.judge)
    except judges.JudgeRefused as exc:
        raise StageError(str(exc)) from None
    return ProbeMonitor(
        held_out[: settings.probe_prompts],
        _reward(iteration),
        load_score_fn(judge.path) if judge is not None else None,
        every=settings.probe_every,
    )


def _rejection_sampling_probe(monitor, policy, start_path: str, sample) -> None:
    """The probe after fine-tuning, at the KL to the starting policy estimated on the
    probe responses (rejection sampling has no reference model of its own)."""
    from rlhf.ml.kl_estimate import sequence_kl

    responses = sample(monitor.prompts)
    reference = _load_policy(start_path).model
    kl = sequence_kl(
        policy.model,
        reference,
        policy.tokenizer,
        [(p.turns, r) for p, r in zip(monitor.prompts, responses, strict=True)],
    )
    del reference
    monitor.probe(1, kl, lambda prompts: responses)


def _probe_sampler(model, tokenizer, config: IterationSettings):
    """Samples the model as it is now, one response per probe prompt, without disturbing
    the training run's random state."""
    import torch

    from rlhf.ml.generation.base import SamplingParams
    from rlhf.ml.generation.local import LocalGenerator

    params = SamplingParams(
        temperature=1.0, max_new_tokens=config.sampling.max_new_tokens, seed=config.seed
    )

    def sample(prompts) -> list[str]:
        state = torch.get_rng_state()
        try:
            result = LocalGenerator(model, tokenizer).generate([p.turns for p in prompts], params)
        finally:
            torch.set_rng_state(state)
        return [row[0].text for row in result.samples]

    return sample


def _monitor_result(monitor, report) -> dict:
    result = monitor.as_dict()
    if result["flag"]:
        report(result["flag"]["message"], force=True)
    return result


def _did_not_move(report, *, kls=(), losses=()) -> str:
    from rlhf.ml.monitor import policy_did_not_move

    note = policy_did_not_move(kls=kls, losses=losses)
    if note:
        report(note, force=True)
    return note


def register(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
    """Name the finished checkpoint RLHF-V{N}. Only now does the iteration have a policy."""
    from rlhf.methods import TRAINING_STAGES

    last = (
        iteration.stages.filter(name__in=TRAINING_STAGES, status=IterationStage.Status.DONE)
        .order_by("-order")
        .first()
    )
    if last is None:
        raise StageError("No training stage finished; there is no policy to register.")
    checkpoint = Path(last.result["checkpoint"])
    _load_policy(checkpoint)
    Iteration.objects.filter(pk=iteration.pk).update(
        policy_name=iteration.name, policy_path=str(checkpoint)
    )
    _registry_add_policy(iteration, checkpoint, last.result)
    return {
        "policy": iteration.name,
        "path": str(checkpoint),
        "parent": iteration.start_policy_name,
        "trained_on": [b.name for b in iteration.batches.all()],
    }


def _registry_add_policy(iteration: Iteration, checkpoint: Path, training_result: dict) -> None:
    """Record RLHF-V{N} in the modeling app's registry, with its parent and batches."""
    from modeling.models import ModelKind, ModelVersion

    parent = ModelVersion.objects.filter(name=iteration.start_policy_name).first()
    batches = list(iteration.batches.all())
    summary = {
        k: v
        for k, v in training_result.items()
        if k
        in (
            "mean_best_reward",
            "targets",
            "started_from",
            "weights",
            "lora",
            "pairs",
            "demonstrations",
        )
    }
    if training_result.get("steps"):
        summary["final_step"] = training_result["steps"][-1]
        if iteration.method in (Iteration.Method.PPO, Iteration.Method.BOTH):
            summary["ppo_final"] = summary["final_step"]
    model, _ = ModelVersion.objects.update_or_create(
        name=iteration.name,
        defaults={
            "kind": ModelKind.POLICY,
            "status": ModelVersion.Status.READY,
            "path": str(checkpoint),
            "tokenizer_path": str(checkpoint),
            "parent": parent,
            "config": {"method": iteration.method, "iteration": iteration.config},
            "metrics": summary,
            "trained_on_hashes": {b.name: b.freeze_hash for b in batches},
            "description": f"Policy of iteration {iteration.number} ({iteration.get_method_display()}).",
        },
    )
    model.trained_on.set(batches)


def evaluate(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
    """RLHF-V{N} against its parent, and against a chosen version (the first policy by
    default), on the held-out prompts: by the proxy reward models it was optimised
    against and by the judge (a reward model it never saw), with each side's response
    lengths. Accepted when the proxies (and, if the settings require it, the judge) give it
    at least ``accept_min_win_rate``."""
    from rlhf import judges
    from rlhf.ml.evaluation import compare_by_judge, compare_policies, length_stats
    from rlhf.ml.scoring import load_score_fn
    from rlhf.models import JudgedBy

    report = _reporter(stage)
    iteration.refresh_from_db()
    settings = config.evaluation
    selected = iteration_prompts(iteration, config)
    fitted = selected.log(report)
    held_out = selected.held_out
    try:
        judge = judges.judge_for_iteration(iteration, settings.judge)
    except judges.JudgeRefused as exc:
        raise StageError(str(exc)) from None
    opponents = [(iteration.start_policy_name, iteration.start_policy_path)]
    versus = _evaluation_versus(iteration, settings.versus)
    if versus is not None and versus[0] != iteration.start_policy_name:
        opponents.append(versus)
    report(f"sampling {iteration.name} on {len(held_out)} held-out prompts", 0.1, force=True)
    candidate = _evaluation_sample(iteration.policy_path, held_out, config, iteration.name)
    reward = _reward(iteration)
    judge_fn = load_score_fn(judge.path) if judge is not None else None
    proxies = f"{Path(iteration.reward_helpfulness_path).name} + {Path(iteration.reward_safety_path).name}"
    prompts = [turns_hash([Turn(Role(t["role"]), t["content"]) for t in p.turns]) for p in held_out]
    results: dict[str, dict] = {}
    for i, (name, path) in enumerate(opponents):
        report(f"sampling {name}", 0.2 + 0.6 * i / len(opponents), force=True)
        baseline = _evaluation_sample(path, held_out, config, name)
        details = {
            "prompts": prompts,
            "lengths": {
                "candidate": length_stats(*candidate).as_dict(),
                "baseline": length_stats(*baseline).as_dict(),
            },
        }
        proxy = compare_policies(held_out, candidate[0], baseline[0], reward)
        proxy_outcome = {**proxy.as_dict(), "n": proxy.n_prompts}
        judges.win_rate_record(
            iteration=iteration,
            candidate=iteration.name,
            baseline=name,
            judged_by=JudgedBy.PROXY,
            judge_name=proxies,
            outcome=proxy_outcome,
            details=details,
        )
        entry = {"proxy": proxy_outcome, **details["lengths"]}
        if judge_fn is not None:
            by_judge = compare_by_judge(held_out, candidate[0], baseline[0], judge_fn)
            judges.win_rate_record(
                iteration=iteration,
                candidate=iteration.name,
                baseline=name,
                judged_by=JudgedBy.JUDGE,
                judge_name=judge.name,
                outcome=by_judge,
                details=details,
            )
            entry["judge"] = by_judge
        results[name] = entry
    parent = results[iteration.start_policy_name]
    outcome = parent["proxy"]
    accepted, reason = _acceptance(iteration, config, parent, judge)
    _registry_record_evaluation(iteration, outcome, accepted)
    PolicyEvaluation.objects.update_or_create(
        iteration=iteration,
        defaults={
            "candidate_name": iteration.name,
            "baseline_name": iteration.start_policy_name,
            "accepted": accepted,
            **{k: v for k, v in outcome.items() if k != "n"},
        },
    )
    verdict = f"win rate {outcome['win_rate']:.1%} [{outcome['ci_low']:.1%}, {outcome['ci_high']:.1%}] by the proxies"
    if "judge" in parent:
        j = parent["judge"]
        verdict += f", {j['win_rate']:.1%} [{j['ci_low']:.1%}, {j['ci_high']:.1%}] by the judge {judge.name}"
    report(f"{verdict} → {'accepted' if accepted else 'rejected'}", 1.0, force=True)
    if not accepted:
        from rlhf.services import iteration_reject

        iteration_reject(iteration_id=iteration.pk, reason=reason)
    return {
        **outcome,
        "accepted": accepted,
        "judge": judge.name if judge is not None else "",
        "prompts": prompts,
        "versus": results,
        "prompt_fit": fitted,
    }


def _evaluation_versus(iteration: Iteration, versus: str) -> tuple[str, str] | None:
    """The version the evaluation also compares with: "first" is the policy the first
    iteration started from; a name is any iteration's policy or starting policy."""
    if not versus:
        return None
    if versus == "first":
        first = Iteration.objects.order_by("number").first()
        return (first.start_policy_name, first.start_policy_path) if first else None
    for other in Iteration.objects.order_by("number"):
        if other.policy_name == versus and other.policy_path:
            return versus, other.policy_path
        if other.start_policy_name == versus:
            return versus, other.start_policy_path
    raise StageError(f"No policy version named {versus!r} to evaluate against.")


def _evaluation_sample(
    path: str, prompts, config: IterationSettings, name: str
) -> tuple[list[str], list[bool]]:
    """One response per held-out prompt (temperature 1, the iteration's seed): the texts,
    and whether each ended on its own (False: cut at max_new_tokens)."""
    from rlhf.ml.generation.base import SamplingParams

    params = SamplingParams(
        temperature=1.0, max_new_tokens=config.sampling.max_new_tokens, seed=config.seed
    )
    result = _sampler(path, name, config).generate([p.turns for p in prompts], params)
    return [row[0].text for row in result.samples], [row[0].finished for row in result.samples]


def _acceptance(
    iteration: Iteration, config: IterationSettings, parent: dict, judge
) -> tuple[bool, str]:
    """(accepted, why not): the proxies' win rate against the parent reaches the bar, and
    the judge's too when the settings require the judge."""
    bar = config.accept_min_win_rate
    proxy = parent["proxy"]["win_rate"]
    if proxy < bar:
        return False, (
            f"{iteration.name} won {proxy:.1%} against {iteration.start_policy_name} by the proxy "
            f"reward models, below the acceptance bar of {bar:.0%}; it will not sample the next batch."
        )
    if config.evaluation.require_judge:
        if judge is None:
            return False, (
                "The settings require a judge, and no reward model marked judge is independent "
                "of the proxies' data; mark one (Django admin → Model versions) and resume."
            )
        by_judge = parent["judge"]["win_rate"]
        if by_judge < bar:
            return False, (
                f"{iteration.name} won {by_judge:.1%} against {iteration.start_policy_name} by the "
                f"judge {judge.name}, below the acceptance bar of {bar:.0%} (the proxies gave "
                f"{proxy:.1%}); it will not sample the next batch."
            )
    return True, ""


def _registry_record_evaluation(iteration: Iteration, outcome: dict, accepted: bool) -> None:
    from modeling.models import ModelVersion

    model = ModelVersion.objects.filter(name=iteration.name).first()
    if model is not None:
        model.metrics = {**model.metrics, "evaluation": outcome, "accepted": accepted}
        model.save(update_fields=["metrics", "updated_at"])


def next_batch(iteration: Iteration, stage: IterationStage, config: IterationSettings) -> dict:
    """Two responses per prompt from the new policy, opened for annotation as one batch."""
    from rlhf.ml.generation.base import SamplingParams

    report = _reporter(stage)
    iteration.refresh_from_db()
    if not iteration.policy_path:
        raise StageError(f"{iteration} has no registered policy.")
    name = f"{iteration.name} samples"
    existing = Batch.objects.filter(name=name).first()
    if existing is not None and existing.status != Batch.Status.DRAFT:
        return {
            "batch_id": existing.pk,
            "comparisons": existing.comparisons.count(),
            "reused": True,
        }
    selected = iteration_prompts(iteration, config)
    fitted = selected.log(report)
    prompts = selected.train[: config.next_batch_prompts]
    originals = selected.train_original[: config.next_batch_prompts]
    dialogues = [p.turns for p in prompts]
    t_a, t_b = config.next_batch_temperatures
    policy = _sampler(iteration.policy_path, iteration.name, config)
    report(f"sampling {len(prompts)} prompts at T={t_a} with {policy.name}", 0.1, force=True)
    first = policy.generate(
        dialogues,
        SamplingParams(
            temperature=t_a, max_new_tokens=config.sampling.max_new_tokens, seed=config.seed
        ),
    )
    if config.next_batch_versus_previous:
        second_model, t_b = iteration.start_policy_name, t_a
        second = _sampler(
            iteration.start_policy_path, iteration.start_policy_name, config
        ).generate(
            dialogues,
            SamplingParams(
                temperature=t_a, max_new_tokens=config.sampling.max_new_tokens, seed=config.seed + 1
            ),
        )
    else:
        second_model = iteration.name
        second = policy.generate(
            dialogues,
            SamplingParams(
                temperature=t_b, max_new_tokens=config.sampling.max_new_tokens, seed=config.seed + 1
            ),
        )
    now = timezone.now()
    created = 0
    with transaction.atomic():
        if existing is not None:
            existing.comparisons.all().delete()
            batch = existing
        else:
            batch = annotation_services.batch_create(
                name=name,
                iteration=iteration.number,
                description=f"Sampled by {iteration.name} for annotation; next week's training data.",
            )
        for prompt, original, a, b in zip(
            prompts, originals, first.samples, second.samples, strict=True
        ):
            text_a, text_b = a[0].text, b[0].text
            if not text_a or not text_b or text_a == text_b:
                continue  # nothing for an annotator to choose between
            # The whole dialogue is stored (and shown); the provenance says when the policy
            # saw only its end.
            cut = {"prompt_truncated_left": True} if prompt is not original else {}
            annotation_services.comparison_create(
                batch=batch,
                turns=[Turn(Role(t["role"]), t["content"]) for t in original.turns],
                response_a=ResponseIn(
                    text_a,
                    iteration.name,
                    {**first.params.as_provenance(), "backend": first.backend, **cut},
                    now,
                ),
                response_b=ResponseIn(
                    text_b,
                    second_model,
                    {**second.params.as_provenance(), "backend": second.backend, **cut},
                    now,
                ),
                category=Category.SAFETY if prompt.safety_tagged else Category.HELPFULNESS,
                source=f"rlhf:{iteration.name}",
            )
            created += 1
        if created == 0:
            raise StageError(
                "Every sampled pair was empty or identical; no comparisons to annotate."
            )
        annotation_services.batch_transition(batch=batch, to=Batch.Status.OPEN)
        Iteration.objects.filter(pk=iteration.pk).update(next_batch=batch)
    report(f"opened batch {name!r} with {created} comparisons", 1.0, force=True)
    return {
        "batch_id": batch.pk,
        "comparisons": created,
        "temperatures": [t_a, t_b],
        "second_model": second_model,
        "prompt_fit": fitted,
    }


def policy_dir(iteration: Iteration) -> Path:
    from rlhf.services import policy_dir as _policy_dir

    return _policy_dir(iteration.number)


HANDLERS = {
    Stage.REWARD_MODELS: reward_models,
    Stage.REJECTION_SAMPLING: rejection_sampling,
    Stage.PPO: ppo,
    Stage.REGISTER: register,
    Stage.EVALUATE: evaluate,
    Stage.NEXT_BATCH: next_batch,
}
