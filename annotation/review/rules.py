"""The rule checks behind review flags, over plain rows (no ORM, no Django).

Three findings, each about one batch:

- a **fast** label: made in less than ``fast_fraction`` of its annotator's median time in
  the batch (among annotators with at least ``min_timed_labels`` timed labels);
- **side bias**: an annotator who picks the response shown on the left (or the right) far
  more often than the batch's median annotator. The screen order is random per task, so
  a careful annotator's left rate sits near everyone else's whatever the data;
- **strength skew**: an annotator whose strengths (Significantly better … Negligibly
  better / Unsure) are distributed far from the batch's median annotator's.

The batch is its median annotator, not the pooled labels: with three annotators, one who
always picks the left response would otherwise make the two others look biased too.

An annotator finding needs both a large difference (``side_gap``, ``strength_distance``)
and a small p-value (``max_p_value``; an exact binomial test, a chi-squared goodness-of-fit
test), so neither a small sample nor a large batch's tiny differences raise one.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from annotation.domain import STRENGTH_ORDER


@dataclass(frozen=True)
class RuleThresholds:
    """When a rule check raises a flag. The defaults suit batches of a few hundred labels
    per annotator; all are documented in docs/annotation.md, "Quality control"."""

    fast_fraction: float = 0.25  # a label faster than this share of its annotator's median
    min_timed_labels: int = 10  # an annotator's median means little below this
    min_annotator_labels: int = 30  # labels an annotator needs before their rates are judged
    side_gap: float = 0.2  # |left rate − the rest of the batch's left rate|
    strength_distance: float = 0.3  # total variation distance between strength distributions
    max_p_value: float = 0.001


DEFAULT_THRESHOLDS = RuleThresholds()


@dataclass(frozen=True)
class LabelRow:
    """What the rules read of one label."""

    label_id: int
    annotator_id: int
    chose_left: bool | None  # None when the label does not say what was on the left
    strength: str  # "" when unrated
    time_spent_ms: int | None


@dataclass(frozen=True)
class FastLabel:
    label_id: int
    annotator_id: int
    seconds: float
    median_seconds: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.median_seconds

    def detail(self) -> str:
        return (
            f"{self.seconds:.1f} s, against this annotator's median of "
            f"{self.median_seconds:.1f} s in the batch ({self.ratio:.0%})"
        )


@dataclass(frozen=True)
class AnnotatorFinding:
    annotator_id: int
    reason: str  # "side_bias" or "strength_skew" (ReviewFlag.Reason values)
    score: float  # the left rate, or the total variation distance
    p_value: float
    detail: str


def fast_labels(
    rows: Iterable[LabelRow], thresholds: RuleThresholds = DEFAULT_THRESHOLDS
) -> list[FastLabel]:
    """Labels made in less than ``fast_fraction`` of their annotator's median time."""
    timed: dict[int, list[tuple[int, int]]] = defaultdict(list)  # annotator → (label, ms)
    for row in rows:
        if row.time_spent_ms is not None:
            timed[row.annotator_id].append((row.label_id, row.time_spent_ms))
    found: list[FastLabel] = []
    for annotator_id, labels in timed.items():
        if len(labels) < thresholds.min_timed_labels:
            continue
        median_ms = statistics.median(ms for _, ms in labels)
        if median_ms <= 0:
            continue
        found.extend(
            FastLabel(label_id, annotator_id, ms / 1000, median_ms / 1000)
            for label_id, ms in labels
            if ms < thresholds.fast_fraction * median_ms
        )
    return sorted(found, key=lambda f: f.label_id)


def side_bias(
    rows: Iterable[LabelRow], thresholds: RuleThresholds = DEFAULT_THRESHOLDS
) -> list[AnnotatorFinding]:
    """Annotators whose rate of choosing the left response is far from the batch's
    (``batch_left_rate``), by a two-sided exact binomial test."""
    from scipy.stats import binomtest

    left: Counter[int] = Counter()
    total: Counter[int] = Counter()
    for row in rows:
        if row.chose_left is not None:
            total[row.annotator_id] += 1
            left[row.annotator_id] += row.chose_left
    judged = {a: left[a] / n for a, n in total.items() if n >= thresholds.min_annotator_labels}
    reference = batch_left_rate(list(judged.values()))
    found = []
    for annotator_id, rate in sorted(judged.items()):
        n = total[annotator_id]
        if abs(rate - reference) < thresholds.side_gap:
            continue
        p_value = binomtest(left[annotator_id], n, reference).pvalue
        if p_value <= thresholds.max_p_value:
            found.append(
                AnnotatorFinding(
                    annotator_id,
                    "side_bias",
                    rate,
                    p_value,
                    f"chose the left response in {rate:.0%} of {n} labels; the batch "
                    f"{reference:.0%} (p = {p_value:.1e})",
                )
            )
    return found


def batch_left_rate(rates: list[float]) -> float:
    """The batch's left rate: the median annotator's, so that one biased annotator does
    not make the others look biased; one half with fewer than three annotators to take
    the median of (the screen order is random, so a careful annotator's expected rate is
    one half). Kept off 0 and 1, where any deviation would be impossible."""
    reference = statistics.median(rates) if len(rates) >= 3 else 0.5
    return min(max(reference, 0.02), 0.98)


def strength_skew(
    rows: Iterable[LabelRow], thresholds: RuleThresholds = DEFAULT_THRESHOLDS
) -> list[AnnotatorFinding]:
    """Annotators whose rated strengths are distributed far from the batch's: total
    variation distance from the median annotator's distribution, and a chi-squared
    goodness-of-fit test against it. Needs three annotators with enough rated labels."""
    from scipy.stats import chisquare

    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row.strength:
            counts[row.annotator_id][row.strength] += 1
    judged = {
        a: own for a, own in counts.items() if sum(own.values()) >= thresholds.min_annotator_labels
    }
    if len(judged) < 3:
        return []
    shares = {a: [own[s] / sum(own.values()) for s in STRENGTH_ORDER] for a, own in judged.items()}
    # The median annotator's share of each strength, smoothed so that a strength nobody
    # else uses still has an expected count, then made to sum to one.
    median = [statistics.median(col) + 0.01 for col in zip(*shares.values(), strict=True)]
    reference = [m / sum(median) for m in median]
    found = []
    for annotator_id, own in sorted(judged.items()):
        n = sum(own.values())
        distance = 0.5 * sum(
            abs(share - ref) for share, ref in zip(shares[annotator_id], reference, strict=True)
        )
        if distance < thresholds.strength_distance:
            continue
        observed = [own[s] for s in STRENGTH_ORDER]
        p_value = float(chisquare(observed, [r * n for r in reference]).pvalue)
        if p_value <= thresholds.max_p_value:
            top = max(STRENGTH_ORDER, key=lambda s: own[s])
            found.append(
                AnnotatorFinding(
                    annotator_id,
                    "strength_skew",
                    distance,
                    p_value,
                    f"strengths {distance:.0%} away from the batch's (total variation, "
                    f"{n} labels, p = {p_value:.1e}); “{top.label}” {own[top] / n:.0%} of the "
                    f"time, against {reference[STRENGTH_ORDER.index(top)]:.0%}",
                )
            )
    return found
