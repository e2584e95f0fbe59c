"""One rejection-sampling run: sample K, score, pick the best, fine-tune, save.

result = run_rejection_sampling(model, tokenizer, prompts, reward, config, out_dir)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modeling.ml.checkpoints import partial_dir, publish
from modeling.ml.lora import (
    gradient_checkpointing_disable,
    gradient_checkpointing_enable,
    lora_merge,
    lora_wrap,
)
from rlhf.ml.generation.base import Generator, SamplingParams
from rlhf.ml.generation.local import LocalGenerator
from rlhf.ml.prompts import PromptExample, RewardFn
from rlhf.ml.rejection_sampling.config import RejectionSamplingConfig
from rlhf.ml.rejection_sampling.curve import CurvePoint, best_of_k_curve
from rlhf.ml.rejection_sampling.sft import finetune_on_targets

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Target:
    turns: tuple[dict, ...]
    response: str
    reward: float
    median_reward: float


@dataclass(frozen=True)
class RejectionSamplingResult:
    curve: list[CurvePoint]
    targets: list[Target]
    sft_losses: list[float]
    checkpoint: Path | None
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        return {
            "curve": [
                {"k": p.k, "mean_max": p.mean_max, "mean_median": p.mean_median} for p in self.curve
            ],
            "targets": len(self.targets),
            "mean_best_reward": statistics.fmean(t.reward for t in self.targets)
            if self.targets
            else None,
            "sft_loss_first": self.sft_losses[0] if self.sft_losses else None,
            "sft_loss_last": self.sft_losses[-1] if self.sft_losses else None,
            "seconds": self.seconds,
        }


def run_rejection_sampling(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[PromptExample],
    reward: RewardFn,
    config: RejectionSamplingConfig,
    out_dir: str | Path | None,
    on_progress: Callable[[str, float], None] | None = None,
    generator: Generator | None = None,
) -> RejectionSamplingResult:
    """Sample, select and fine-tune ``model`` in place; save it to ``out_dir`` atomically.

    With ``config.lora`` the fine-tuning trains LoRA adapters only, merged into ``model``'s
    weights before it is saved (``model`` stays a plain model, usable after). ``generator``
    samples instead of ``model`` in this process (an inference server serving the same
    weights: ``rlhf.ml.generation.remote``)."""
    if not prompts:
        raise ValueError("The prompt set is empty: rejection sampling has nothing to sample from.")
    progress = on_progress or (lambda stage, fraction: None)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    params = SamplingParams(
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        num_samples=config.num_samples,
        seed=config.seed,
    )
    sampler = generator or LocalGenerator(model, tokenizer)  # e.g. a vLLM server serving ``model``
    generated = sampler.generate([p.turns for p in prompts], params)
    seconds["generation"] = time.perf_counter() - t0
    progress("scoring", 0.4)

    t0 = time.perf_counter()
    k = config.num_samples
    contexts = [list(p.turns) for p in prompts for _ in range(k)]
    responses = [g.text for row in generated.samples for g in row]
    tags = [p.safety_tagged for p in prompts for _ in range(k)]
    flat = reward(contexts, responses, tags)
    rewards = [list(flat[i * k : i * k + k]) for i in range(len(prompts))]
    seconds["reward"] = time.perf_counter() - t0

    targets = []
    for prompt, row, scores in zip(prompts, generated.samples, rewards, strict=True):
        best = max(range(k), key=lambda j: scores[j])
        targets.append(
            Target(prompt.turns, row[best].text, scores[best], statistics.median(scores))
        )
    progress("fine-tuning", 0.5)

    t0 = time.perf_counter()
    if config.gradient_checkpointing:
        gradient_checkpointing_enable(model)
    adapted = lora_wrap(model, config.lora, task_type="CAUSAL_LM") if config.lora.enabled else None
    losses = finetune_on_targets(
        model,
        tokenizer,
        [(t.turns, t.response) for t in targets],
        config,
        on_step=lambda step, total, loss: progress("fine-tuning", 0.5 + 0.45 * step / total),
    )
    if adapted is not None:
        lora_merge(adapted)  # into ``model``'s own layers
    if config.gradient_checkpointing:
        gradient_checkpointing_disable(model)
    seconds["finetune"] = time.perf_counter() - t0
    checkpoint = None
    if out_dir is not None:
        tmp = partial_dir(out_dir)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        checkpoint = publish(tmp, out_dir)
    progress("done", 1.0)
    return RejectionSamplingResult(best_of_k_curve(rewards), targets, losses, checkpoint, seconds)
