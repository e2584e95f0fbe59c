"""Reward-model evaluation metrics, plain Python (no Django, no torch).

Input: per held-out pair its two rewards and its strength / category / source. Output: a
JSON-ready dict with accuracy overall, by strength bucket (Llama 2 Table 8 columns plus
"unrated" for imported binary data), per test set, a calibration table (reward difference
bins against the empirical probability that the preferred response wins) and a histogram
of scores.
"""

from __future__ import annotations

import math
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
    }
