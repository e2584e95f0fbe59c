"""Online (iterative) DPO: pairs made from the policy's own samples, then DPO on them.

Each round samples K responses per prompt from the current policy, ranks them by the
combined reward (``rlhf.ml.ranked.sample_ranked``) and pairs the best against the worst
(the iterative DPO recipe of Xiong et al. 2024 and Dong et al. 2024, "RLHF Workflow");
a prompt whose best and worst rewards tie says nothing about preference and is skipped.

    ranked = sample_ranked(model, tokenizer, prompts, reward, k=4, params=...).ranked
    pairs = online_pairs(ranked)
    trainer.train(pairs)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rlhf.ml.dpo.data import PreferencePair
from rlhf.ml.dpo.trainer import DPOTrainer
from rlhf.ml.generation.base import Generator, SamplingParams
from rlhf.ml.prompts import PromptExample, RewardFn
from rlhf.ml.ranked import RankedSamples, sample_ranked
from rlhf.ml.train_state import TrainState

log = logging.getLogger(__name__)


def best_worst_pairs(ranked: Sequence[RankedSamples]) -> tuple[list[PreferencePair], int]:
    """(best-vs-worst pairs, prompts skipped because their best and worst rewards tie)."""
    pairs, skipped = [], 0
    for item in ranked:
        if len(item.responses) < 2 or item.rewards[0] <= item.rewards[-1]:
            skipped += 1
            continue
        pairs.append(PreferencePair(item.turns, item.responses[0], item.responses[-1]))
    return pairs, skipped


def online_pairs(ranked: Sequence[RankedSamples]) -> list[PreferencePair]:
    """Each prompt's best sample against its worst (ranked best first); ties skipped and
    counted in the log."""
    pairs, skipped = best_worst_pairs(ranked)
    if skipped:
        log.info(
            "online DPO: %d of %d prompts skipped (best and worst rewards tie)",
            skipped,
            len(ranked),
        )
    return pairs


@dataclass(frozen=True)
class OnlineRound:
    pairs: list[PreferencePair]
    skipped: int  # prompts whose K samples tied on reward
    steps: list[dict]  # the trainer's per-step metrics
    seconds: dict[str, float]  # generation, reward


class OnlineDPO:
    """One round = sample K per prompt with the trainer's policy, pair best vs worst, train."""

    def __init__(
        self, trainer: DPOTrainer, reward: RewardFn, *, generator: Generator | None = None
    ) -> None:
        self.trainer, self.reward, self.generator = trainer, reward, generator

    def sampling_params(self) -> SamplingParams:
        c = self.trainer.config
        return SamplingParams(
            temperature=c.temperature, top_p=c.top_p, max_new_tokens=c.max_new_tokens, seed=c.seed
        )

    def round(
        self,
        prompts: Sequence[PromptExample],
        *,
        on_step: Callable[[dict], None] | None = None,
        state: TrainState | None = None,
    ) -> OnlineRound:
        trainer = self.trainer
        sampled = sample_ranked(
            None if self.generator else trainer.model,
            None if self.generator else trainer.tokenizer,
            prompts,
            self.reward,
            k=trainer.config.num_samples,
            params=self.sampling_params(),
            generator=self.generator,
        )
        pairs, skipped = best_worst_pairs(sampled.ranked)
        if not pairs:
            raise ValueError(
                f"All {len(prompts)} prompts' {trainer.config.num_samples} samples tied on "
                "reward: online DPO has no pairs to train on (raise num_samples or temperature)."
            )
        steps = trainer.train(pairs, on_step=on_step, state=state)
        return OnlineRound(pairs, skipped, steps, sampled.seconds)
