"""How unsure reward models are about a comparison: the queue's uncertainty order. Django-free.

A reward model scores each response; under the Bradley-Terry model it is trained with
(Llama 2 §3.2.2, Ouyang et al. 2022), the probability that A is preferred is
σ(r_A − r_B). Two ways to pick the pairs a reward model does not yet know:

- **margin**: one model, the smallest predicted |r_A − r_B| first. The score is
  ``margin_uncertainty = 1 − |2σ(r_A − r_B) − 1|``: 1 when the model cannot tell the two
  apart, towards 0 when it is sure (a monotone function of |r_A − r_B|, on a fixed scale).
- **ensemble**: several models (e.g. reward models of successive weeks, or of different
  seeds), the largest disagreement first: ``ensemble_disagreement`` is the standard
  deviation of their σ(r_A − r_B), from 0 (all agree) to 0.5 (split, each sure).

Both are "higher = label sooner", and > 0 for any scored pair except a unanimous
ensemble, so 0 can mean "not scored" (``annotation.models.Comparison.priority``).

    uncertainty_scores([[0.3, 2.0]], [[0.1, -1.0]], order="margin")  # first model only
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

UncertaintyOrder = Literal["margin", "ensemble"]


def preference_probability(reward_a: float, reward_b: float) -> float:
    """σ(r_A − r_B): the Bradley-Terry probability that A is preferred (overflow-safe)."""
    delta = reward_a - reward_b
    if delta >= 0:
        return 1.0 / (1.0 + math.exp(-delta))
    e = math.exp(delta)
    return e / (1.0 + e)


def margin_uncertainty(reward_a: float, reward_b: float) -> float:
    """1 − |2σ(r_A − r_B) − 1| = 2·min(p, 1 − p): 1 at r_A = r_B, → 0 as |r_A − r_B| grows."""
    p = preference_probability(reward_a, reward_b)
    return 2.0 * min(p, 1.0 - p)


def ensemble_disagreement(rewards_a: Sequence[float], rewards_b: Sequence[float]) -> float:
    """Population standard deviation of the members' σ(r_A − r_B); one value per member."""
    if len(rewards_a) != len(rewards_b) or not rewards_a:
        raise ValueError("one reward for A and one for B per ensemble member, at least one")
    probs = [preference_probability(a, b) for a, b in zip(rewards_a, rewards_b, strict=True)]
    mean = sum(probs) / len(probs)
    return math.sqrt(sum((p - mean) ** 2 for p in probs) / len(probs))


def uncertainty_scores(
    rewards_a: Sequence[Sequence[float]],
    rewards_b: Sequence[Sequence[float]],
    *,
    order: UncertaintyOrder,
) -> list[float]:
    """One score per comparison (higher = more uncertain = label sooner).

    ``rewards_a[m][i]`` is model ``m``'s reward for comparison ``i``'s response A (same for
    B). ``order="margin"`` uses the first model only (list the newest first);
    ``order="ensemble"`` needs at least two models.
    """
    if not rewards_a or len(rewards_a) != len(rewards_b):
        raise ValueError("rewards_a and rewards_b need the same models, at least one")
    n = len(rewards_a[0])
    if any(len(r) != n for r in (*rewards_a, *rewards_b)):
        raise ValueError("every model must score every comparison")
    if order == "margin":
        return [margin_uncertainty(a, b) for a, b in zip(rewards_a[0], rewards_b[0], strict=True)]
    if order == "ensemble":
        if len(rewards_a) < 2:
            raise ValueError("an ensemble needs at least two reward models")
        return [
            ensemble_disagreement([r[i] for r in rewards_a], [r[i] for r in rewards_b])
            for i in range(n)
        ]
    raise ValueError(f"unknown uncertainty order {order!r}: 'margin' or 'ensemble'")
