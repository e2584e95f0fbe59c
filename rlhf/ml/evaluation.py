"""Judging a new policy against the previous one with the reward models (Llama 2 §3.4.1
uses the RMs as a proxy for human judgement between iterations). Plain Python."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rlhf.ml.prompts import PromptExample
from rlhf.ml.rewards import SAFETY_THRESHOLD, CombinedReward

Z_95 = 1.959963984540054


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927); ties count as half."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PolicyComparison:
    n_prompts: int
    wins: int
    ties: int
    losses: int
    win_rate: float  # (wins + ties/2) / n
    ci_low: float
    ci_high: float
    candidate_helpfulness: float
    candidate_safety: float
    candidate_unsafe_share: float
    baseline_helpfulness: float
    baseline_safety: float
    baseline_unsafe_share: float

    def as_dict(self) -> dict:
        return asdict(self)


def compare_policies(
    prompts: Sequence[PromptExample],
    candidate: Sequence[str],
    baseline: Sequence[str],
    reward: CombinedReward,
    *,
    threshold: float = SAFETY_THRESHOLD,
    tie_margin: float = 1e-6,
) -> PolicyComparison:
    """``candidate[i]`` and ``baseline[i]`` answer ``prompts[i]``; the combined reward judges."""
    if not prompts:
        raise ValueError("No held-out prompts to evaluate on.")
    contexts = [list(p.turns) for p in prompts]
    tags = [p.safety_tagged for p in prompts]
    cand = reward.breakdown(contexts, list(candidate), tags)
    base = reward.breakdown(contexts, list(baseline), tags)
    wins = ties = losses = 0
    for c, b in zip(cand.combined, base.combined, strict=True):
        if abs(c - b) <= tie_margin:
            ties += 1
        elif c > b:
            wins += 1
        else:
            losses += 1
    n = len(prompts)
    low, high = wilson_interval(wins + ties / 2, n)
    return PolicyComparison(
        n_prompts=n,
        wins=wins,
        ties=ties,
        losses=losses,
        win_rate=(wins + ties / 2) / n,
        ci_low=low,
        ci_high=high,
        candidate_helpfulness=statistics.fmean(cand.helpfulness),
        candidate_safety=statistics.fmean(cand.safety),
        candidate_unsafe_share=cand.unsafe_share(threshold),
        baseline_helpfulness=statistics.fmean(base.helpfulness),
        baseline_safety=statistics.fmean(base.safety),
        baseline_unsafe_share=base.unsafe_share(threshold),
    )
