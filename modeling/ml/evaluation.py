"""Reward-model evaluation metrics, plain Python (no Django, no torch).

Input: per held-out pair its two rewards and its strength / category / source. Output: a
JSON-ready dict with accuracy overall, by strength bucket (Llama 2 Table 8 columns plus
"unrated" for imported binary data), per test set, a calibration table (reward difference
bins against the empirical probability that the preferred response wins) and a histogram
of scores.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from annotation.domain import STRENGTH_LABELS, STRENGTH_ORDER

UNRATED = "unrated"
BUCKETS = [s.value for s in STRENGTH_ORDER] + [UNRATED]
BUCKET_LABELS = {
    **{s.value: label for s, label in STRENGTH_LABELS.items()},
    UNRATED: "Unrated (binary)",
}


@dataclass(frozen=True)
class ScoredPair:
    chosen_reward: float
    rejected_reward: float
    strength: str  # "" for unrated
    test_set: str  # e.g. "helpfulness", "safety", "safety · anthropic-hh"
    chosen_length: int = 0  # words in the preferred response
    rejected_length: int = 0
    turns: int = 1  # user turns in the dialogue the two responses answer


def _acc(rows: Sequence[ScoredPair]) -> dict:
    n = len(rows)
    correct = sum(r.chosen_reward > r.rejected_reward for r in rows)
    return {"n": n, "accuracy": correct / n if n else None}


def reward_metrics(
    rows: Sequence[ScoredPair], *, calibration_bins: int = 10, histogram_bins: int = 20
) -> dict:
    by_strength = {b: _acc([r for r in rows if (r.strength or UNRATED) == b]) for b in BUCKETS}
    rated = [r for r in rows if r.strength]
    sets = sorted({r.test_set for r in rows})
    per_set = {}
    for name in sets:
        sub = [r for r in rows if r.test_set == name]
        per_set[name] = {
            **_acc(sub),
            "by_strength": {
                b: _acc([r for r in sub if (r.strength or UNRATED) == b]) for b in BUCKETS
            },
        }
    diffs = [r.chosen_reward - r.rejected_reward for r in rows]
    calibration = []
    if diffs:
        # Symmetric bins over |diff|, orientation randomised away: a pair contributes
        # (d, win=1) as preferred-vs-other; calibration asks P(win | d).
        span = max(abs(d) for d in diffs) or 1.0
        edges = [-span + 2 * span * i / calibration_bins for i in range(calibration_bins + 1)]
        points = [(d, 1) for d in diffs] + [(-d, 0) for d in diffs]
        for lo, hi in zip(edges, edges[1:], strict=False):
            inside = [w for d, w in points if lo <= d < hi or (hi == edges[-1] and d == hi)]
            if inside:
                calibration.append(
                    {
                        "lo": lo,
                        "hi": hi,
                        "n": len(inside),
                        "win_rate": sum(inside) / len(inside),
                        "predicted": 1 / (1 + math.exp(-(lo + hi) / 2)),
                    }
                )
    scores = [r.chosen_reward for r in rows] + [r.rejected_reward for r in rows]
    histogram = []
    if scores:
        lo, hi = min(scores), max(scores)
        width = (hi - lo) / histogram_bins or 1.0
        counts = [0] * histogram_bins
        for s in scores:
            counts[min(int((s - lo) / width), histogram_bins - 1)] += 1
        histogram = [
            {"lo": lo + i * width, "hi": lo + (i + 1) * width, "n": c} for i, c in enumerate(counts)
        ]
    return {
        **_acc(rows),
        "avg_rated": _acc(rated)["accuracy"],
        "by_strength": by_strength,
        "test_sets": per_set,
        "calibration": calibration,
        "histogram": histogram,
        "mean_margin": sum(diffs) / len(diffs) if diffs else None,
        "score_mean": sum(scores) / len(scores) if scores else None,
        "score_min": min(scores) if scores else None,
        "score_max": max(scores) if scores else None,
        "length": length_diagnostics(rows),
    }


# Bucket edges of the HH paper's robustness plots, by dialogue turns.
TURN_BUCKETS = ("1", "2", "3", "4+")
# Shares of the score distribution both responses must clear (0 = every pair).
SCORE_QUANTILES = (0.0, 0.5, 0.75, 0.9)


def _turn_bucket(turns: int) -> str:
    return str(turns) if turns < 4 else "4+"


def length_diagnostics(rows: Sequence[ScoredPair]) -> dict:
    """Is the reward model more than a length detector? (Bai et al. 2022 §4, Singhal et al. 2023)

    - ``length_baseline_accuracy``: "the longer response wins" on the same pairs (equal
      lengths count half), against the model's ``accuracy``;
    - ``reward_length_correlation``: Pearson's r between each response's reward and its
      length in words;
    - ``by_turns``: accuracy by the number of user turns in the dialogue;
    - ``both_above``: accuracy on the pairs whose two responses both score above the q-th
      quantile of all scores (the HH paper finds preference models least reliable there);
    - ``no_better_than_length``: the model's accuracy does not beat the length baseline.
    """
    n = len(rows)
    if n == 0:
        return {"n": 0}
    accuracy = sum(r.chosen_reward > r.rejected_reward for r in rows) / n
    longer = sum(
        1.0
        if r.chosen_length > r.rejected_length
        else 0.5
        if r.chosen_length == r.rejected_length
        else 0.0
        for r in rows
    )
    rewards = [r.chosen_reward for r in rows] + [r.rejected_reward for r in rows]
    lengths = [r.chosen_length for r in rows] + [r.rejected_length for r in rows]
    try:
        correlation: float | None = statistics.correlation(lengths, rewards)
    except statistics.StatisticsError:  # fewer than two points, or a constant
        correlation = None
    by_turns = {b: _acc([r for r in rows if _turn_bucket(r.turns) == b]) for b in TURN_BUCKETS}
    ordered = sorted(rewards)
    both_above = []
    for q in SCORE_QUANTILES:
        threshold = ordered[min(int(q * len(ordered)), len(ordered) - 1)] if q else -math.inf
        sub = [r for r in rows if min(r.chosen_reward, r.rejected_reward) > threshold]
        both_above.append({"quantile": q, "threshold": None if q == 0 else threshold, **_acc(sub)})
    baseline = longer / n
    return {
        "n": n,
        "accuracy": accuracy,
        "length_baseline_accuracy": baseline,
        "no_better_than_length": accuracy <= baseline,
        "reward_length_correlation": correlation,
        "mean_chosen_length": statistics.fmean(r.chosen_length for r in rows),
        "mean_rejected_length": statistics.fmean(r.rejected_length for r in rows),
        "by_turns": by_turns,
        "both_above": both_above,
    }
