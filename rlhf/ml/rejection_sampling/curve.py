"""Llama 2 Fig. 7: mean over prompts of the max and the median reward among the first k
samples, for each k up to K. The gap between the two is what rejection sampling buys."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CurvePoint:
    k: int
    mean_max: float
    mean_median: float


def best_of_k_curve(rewards: Sequence[Sequence[float]]) -> list[CurvePoint]:
    """``rewards[i][j]``: reward of sample j of prompt i (all prompts have K samples)."""
    if not rewards:
        return []
    k_max = min(len(r) for r in rewards)
    n = len(rewards)
    return [
        CurvePoint(
            k=k,
            mean_max=sum(max(r[:k]) for r in rewards) / n,
            mean_median=sum(statistics.median(r[:k]) for r in rewards) / n,
        )
        for k in range(1, k_max + 1)
    ]
