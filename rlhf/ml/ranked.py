"""K samples per prompt from the policy, scored by the combined reward and ranked: what
rejection sampling picks the best of, what online DPO pairs best against worst, and what
RRHF and PRO rank. Django-free.

    ranked = sample_ranked(model, tokenizer, prompts, reward, k=4, params=...)
    ranked[0].responses[0]   # the best response to the first prompt
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rlhf.ml.generation.base import Generator, SamplingParams
from rlhf.ml.prompts import PromptExample, RewardFn

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class RankedSamples:
    """One prompt's K samples, best first by the reward (ties keep sampling order)."""

    prompt: PromptExample
    responses: tuple[str, ...]
    rewards: tuple[float, ...]

    @property
    def turns(self) -> tuple[dict, ...]:
        return self.prompt.turns


@dataclass(frozen=True)
class SampledRanking:
    ranked: list[RankedSamples]
    seconds: dict[str, float] = field(default_factory=dict)  # generation, reward


def rank(
    prompts: Sequence[PromptExample],
    responses: Sequence[Sequence[str]],
    rewards: Sequence[Sequence[float]],
) -> list[RankedSamples]:
    """Each prompt's responses sorted by reward, best first (a stable sort)."""
    out = []
    for prompt, texts, scores in zip(prompts, responses, rewards, strict=True):
        order = sorted(range(len(texts)), key=lambda j: -scores[j])
        out.append(
            RankedSamples(
                prompt, tuple(texts[j] for j in order), tuple(float(scores[j]) for j in order)
            )
        )
    return out


def sample_ranked(
    model: PreTrainedModel | None,
    tokenizer: PreTrainedTokenizerBase | None,
    prompts: Sequence[PromptExample],
    reward: RewardFn,
    *,
    k: int,
    params: SamplingParams,
    generator: Generator | None = None,
) -> SampledRanking:
    """Sample ``k`` responses per prompt (with ``model`` in this process, or ``generator``,
    e.g. an inference server serving the same weights), score each with ``reward`` and
    rank them. ``k`` must be at least 2: one sample has nothing to be ranked against."""
    from rlhf.ml.generation.local import LocalGenerator

    if k < 2:
        raise ValueError(f"K samples per prompt must be at least 2 to rank them (got {k}).")
    if not prompts:
        raise ValueError("The prompt set is empty: there is nothing to sample.")
    if generator is None:
        if model is None or tokenizer is None:
            raise ValueError("sample_ranked needs a model and its tokenizer, or a generator.")
        generator = LocalGenerator(model, tokenizer)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    generated = generator.generate([p.turns for p in prompts], replace(params, num_samples=k))
    seconds["generation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    contexts = [list(p.turns) for p in prompts for _ in range(k)]
    texts = [g.text for row in generated.samples for g in row]
    tags = [p.safety_tagged for p in prompts for _ in range(k)]
    flat = reward(contexts, texts, tags)
    seconds["reward"] = time.perf_counter() - t0
    responses = [texts[i * k : (i + 1) * k] for i in range(len(prompts))]
    rewards = [list(flat[i * k : (i + 1) * k]) for i in range(len(prompts))]
    return SampledRanking(rank(prompts, responses, rewards), seconds)
