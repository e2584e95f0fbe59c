"""Turning reward-model scores into the scalar reward the policy is optimised for.

Plain Python and math: no Django, no torch. Shared by rejection sampling, PPO and
policy evaluation so all three judge a response the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Llama 2 §3.2.3: "we use the safety reward model's score where the prompt is tagged as
# safety-relevant or where that score is below 0.15", on the sigmoid-squashed score.
SAFETY_THRESHOLD = 0.15

# (contexts, responses) -> raw scores; modeling.ml.inference.RewardScorer.score has this shape.
ScoreFn = Callable[[list[list[dict]], list[str]], list[float]]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def logit(p: float, eps: float = 1e-6) -> float:
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def combined_reward(
    helpfulness: float, safety: float, *, safety_tagged: bool, threshold: float = SAFETY_THRESHOLD
) -> float:
    """Llama 2's R_c: the safety RM's raw score if the prompt is safety-tagged or the
    safety RM finds the response unsafe (sigmoid(score) < threshold), else the helpfulness
    RM's raw score."""
    if safety_tagged or sigmoid(safety) < threshold:
        return safety
    return helpfulness


def squash_then_logit(score: float, eps: float = 1e-6) -> float:
    """logit(sigmoid(score)) with the probability clipped to [eps, 1-eps]: the identity for
    ordinary scores, a bound on extreme ones (Llama 2 whitens "the final linear scores")."""
    return logit(sigmoid(score), eps)


def whiten(values: Sequence[float], eps: float = 1e-8) -> list[float]:
    """Zero mean, unit variance over the batch (Llama 2 §3.2.3, WHITEN)."""
    n = len(values)
    if n < 2:
        return [0.0] * n
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / n
    return [(v - mean) / math.sqrt(var + eps) for v in values]


@dataclass(frozen=True)
class RewardBreakdown:
    helpfulness: list[float]
    safety: list[float]
    combined: list[float]

    def unsafe_share(self, threshold: float = SAFETY_THRESHOLD) -> float:
        if not self.safety:
            return 0.0
        return sum(sigmoid(s) < threshold for s in self.safety) / len(self.safety)


class CombinedReward:
    """Scores responses with both reward models and combines them per prompt.

    ``helpfulness`` and ``safety`` are ``ScoreFn``s; for tests and toy problems the same
    function can serve as both.
    """

    def __init__(
        self, helpfulness: ScoreFn, safety: ScoreFn, *, threshold: float = SAFETY_THRESHOLD
    ):
        self.helpfulness, self.safety, self.threshold = helpfulness, safety, threshold

    def breakdown(
        self, contexts: list[list[dict]], responses: list[str], safety_tagged: Sequence[bool]
    ) -> RewardBreakdown:
        h = [float(x) for x in self.helpfulness(contexts, responses)]
        s = (
            [float(x) for x in self.safety(contexts, responses)]
            if self.safety is not self.helpfulness
            else h
        )
        combined = [
            combined_reward(hi, si, safety_tagged=t, threshold=self.threshold)
            for hi, si, t in zip(h, s, safety_tagged, strict=True)
        ]
        for value in combined:
            if not math.isfinite(value):
                raise ValueError("A reward model returned a non-finite score (NaN or inf).")
        return RewardBreakdown(h, s, combined)

    def __call__(
        self, contexts: list[list[dict]], responses: list[str], safety_tagged: Sequence[bool]
    ) -> list[float]:
        return self.breakdown(contexts, responses, safety_tagged).combined
