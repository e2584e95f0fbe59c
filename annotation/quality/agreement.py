"""Inter-annotator agreement on pairwise preference labels, in plain Python over numpy.

No Django: a selector (``annotation.quality.selectors``) reads a batch's labels into
:class:`Ratings` and these functions return plain numbers and frozen dataclasses.

Two readings of one label:

- the **signed scale**, ordinal, seven points from *B significantly better* (-3) through
  *Negligibly better / Unsure* (0, whichever side was picked: it says "about the same") to
  *A significantly better* (+3). A label that was never rated (binary data such as HH or
  PandaLM's 1/2) sits at ±2 (*Better*): ordinal α and linearly weighted κ depend only on the
  order of the points that occur and on their proportional distances, so a batch of unrated
  labels and ties reads as the three-point scale B < tie < A.
- the **binary choice**, nominal: which response was preferred (A or B), ties included on
  the side they were given.

Krippendorff's α comes from the ``krippendorff`` package (Castro, 2017), fed value counts
per comparison, so any number of annotators, missing labels and uneven overlap are allowed.
Cohen's κ (Cohen, 1968, weighted) is computed here for each pair of annotators with
enough comparisons in common; the tests hold it to hand-computed values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import krippendorff
import numpy as np

from annotation.domain import Strength

# Position on the signed scale of each strength, on A's side (B's is the negative).
STRENGTH_POINTS: dict[str, int] = {
    Strength.SIGNIFICANTLY_BETTER: 3,
    Strength.BETTER: 2,
    Strength.SLIGHTLY_BETTER: 1,
    Strength.NEGLIGIBLY_BETTER_OR_UNSURE: 0,
}
UNRATED_POINT = 2  # an unrated label's place: beyond "unsure", on its side (see above)
SIGNED_SCALE = tuple(range(-3, 4))  # -3 (B significantly) ... 0 (unsure) ... +3 (A significantly)
SIGNED_SCALE_NAMES = {
    -3: "B significantly",
    -2: "B better",
    -1: "B slightly",
    0: "Negligibly / unsure",
    1: "A slightly",
    2: "A better",
    3: "A significantly",
}
# Fewer comparisons in common than this and a pair's κ says more about chance than about them.
MIN_SHARED_FOR_KAPPA = 20


def signed_point(preferred: str, strength: str) -> int:
    """The label's point on the signed scale: + for A, - for B, 0 for negligibly/unsure."""
    if preferred not in ("A", "B"):
        raise ValueError(f"preferred must be 'A' or 'B', got {preferred!r}")
    magnitude = STRENGTH_POINTS[strength] if strength else UNRATED_POINT
    return magnitude if preferred == "A" else -magnitude


def verdict(point: int) -> int:
    """The three-way verdict of a signed point: 1 (A), -1 (B) or 0 (about the same)."""
    return (point > 0) - (point < 0)


@dataclass(frozen=True)
class Ratings:
    """Labels as parallel arrays, one entry per label.

    ``item`` indexes the comparisons (0..n_items-1) and ``rater`` the annotators
    (0..len(raters)-1); an annotator labels a comparison at most once.
    """

    item: np.ndarray  # int64
    rater: np.ndarray  # int64
    point: np.ndarray  # int64, on SIGNED_SCALE
    chose_b: np.ndarray  # int64, 1 where B was preferred (ties keep their side)
    raters: tuple[str, ...]
    n_items: int

    @classmethod
    def from_labels(cls, labels: Iterable[tuple[object, str, str, str]]) -> Ratings:
        """From ``(comparison, rater, preferred, strength)`` tuples, in any order."""
        item_ids: dict[object, int] = {}
        rater_ids: dict[str, int] = {}
        items: list[int] = []
        raters: list[int] = []
        points: list[int] = []
        chose_b: list[int] = []
        for comparison, rater, preferred, strength in labels:
            items.append(item_ids.setdefault(comparison, len(item_ids)))
            raters.append(rater_ids.setdefault(rater, len(rater_ids)))
            points.append(signed_point(preferred, strength))
            chose_b.append(preferred == "B")
        return cls(
            item=np.asarray(items, dtype=np.int64),
            rater=np.asarray(raters, dtype=np.int64),
            point=np.asarray(points, dtype=np.int64),
            chose_b=np.asarray(chose_b, dtype=np.int64),
            raters=tuple(rater_ids),
            n_items=len(item_ids),
        )

    def __len__(self) -> int:
        return len(self.item)

    def only(self, mask: np.ndarray) -> Ratings:
        """The labels where ``mask`` holds, with the same item and rater numbering."""
        return Ratings(
            self.item[mask],
            self.rater[mask],
            self.point[mask],
            self.chose_b[mask],
            self.raters,
            self.n_items,
        )


def _value_counts(item: np.ndarray, value: np.ndarray, n_values: int, n_items: int) -> np.ndarray:
    counts = np.bincount(item * n_values + value, minlength=n_items * n_values)
    return counts.reshape(n_items, n_values)


def _alpha(counts: np.ndarray, level: Literal["nominal", "ordinal"]) -> float | None:
    """α from an items × values count matrix; None when it is undefined (fewer than two
    labels on any comparison, or a single value used throughout)."""
    counts = counts[counts.sum(axis=1) >= 2]
    if counts.size == 0 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return None
    value = krippendorff.alpha(value_counts=counts, level_of_measurement=level)
    return None if np.isnan(value) else float(value)


def alpha_signed(ratings: Ratings) -> float | None:
    """Krippendorff's α, ordinal, on the seven-point signed scale."""
    counts = _value_counts(ratings.item, ratings.point + 3, len(SIGNED_SCALE), ratings.n_items)
    return _alpha(counts, "ordinal")


def alpha_binary(ratings: Ratings) -> float | None:
    """Krippendorff's α, nominal, on the binary choice (A or B)."""
    return _alpha(_value_counts(ratings.item, ratings.chose_b, 2, ratings.n_items), "nominal")


def cohen_kappa_linear(x: Sequence[int], y: Sequence[int]) -> float | None:
    """Cohen's κ with linear weights on the signed scale for two raters' points on the same
    comparisons: 1 - Σ w·observed / Σ w·expected, w = |i - j|. None when chance alone
    would give perfect agreement (both raters always use one and the same point)."""
    if len(x) != len(y):
        raise ValueError("both raters need a point for every shared comparison")
    k = len(SIGNED_SCALE)
    a = np.asarray(x, dtype=np.int64) + 3
    b = np.asarray(y, dtype=np.int64) + 3
    observed = np.bincount(a * k + b, minlength=k * k).reshape(k, k).astype(float)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(len(a), 1)
    idx = np.arange(k)
    weights = np.abs(idx[:, None] - idx[None, :])
    disagreement_by_chance = float((weights * expected).sum())
    if disagreement_by_chance == 0:
        return None
    return 1.0 - float((weights * observed).sum()) / disagreement_by_chance


@dataclass(frozen=True)
class KappaPair:
    rater_a: str
    rater_b: str
    shared: int
    kappa: float | None  # None: fewer than min_shared in common, or undefined


def pairwise_kappa(ratings: Ratings, *, min_shared: int = MIN_SHARED_FOR_KAPPA) -> list[KappaPair]:
    """Weighted κ for every pair of annotators who labelled at least one comparison in common;
    ``kappa`` is None below ``min_shared`` shared comparisons."""
    order = np.lexsort((ratings.rater, ratings.item))
    item, rater, point = ratings.item[order], ratings.rater[order], ratings.point[order]
    bounds = np.flatnonzero(np.diff(item)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(item)]))
    pairs: dict[tuple[int, int], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        if end - start < 2:
            continue
        who, where = rater[start:end].tolist(), point[start:end].tolist()
        for i, j in combinations(range(end - start), 2):
            xs, ys = pairs[(who[i], who[j])]
            xs.append(where[i])
            ys.append(where[j])
    out = []
    for (i, j), (xs, ys) in sorted(pairs.items()):
        kappa = cohen_kappa_linear(xs, ys) if len(xs) >= min_shared else None
        out.append(KappaPair(ratings.raters[i], ratings.raters[j], len(xs), kappa))
    return out


@dataclass(frozen=True)
class MajorityAgreement:
    rater: str
    labels: int
    compared: int  # labels on comparisons where the others had a strict majority verdict
    agreed: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


def majority_agreement(ratings: Ratings) -> list[MajorityAgreement]:
    """Each annotator's agreement with the majority of the others, on the three-way verdict
    (A, B, about the same): over the comparisons where the other annotators have a strict
    majority (more than half of them share one verdict)."""
    n_raters = len(ratings.raters)
    v = np.sign(ratings.point) + 1  # 0: B, 1: about the same, 2: A
    counts = _value_counts(ratings.item, v, 3, ratings.n_items)
    others = counts[ratings.item]
    others[np.arange(len(v)), v] -= 1
    n_others = others.sum(axis=1)
    top = others.argmax(axis=1)
    has_majority = 2 * others.max(axis=1) > n_others  # False when no others
    agreed = has_majority & (top == v)
    labels = np.bincount(ratings.rater, minlength=n_raters)
    compared = np.bincount(ratings.rater, weights=has_majority, minlength=n_raters)
    agreed_n = np.bincount(ratings.rater, weights=agreed, minlength=n_raters)
    return [
        MajorityAgreement(name, int(labels[r]), int(compared[r]), int(agreed_n[r]))
        for r, name in enumerate(ratings.raters)
    ]


def disagreement_count(ratings: Ratings) -> int:
    """Comparisons with two labels or more that disagree: on different sides, or one of
    them *Negligibly better / Unsure* (the adaptive-overlap rule's reading)."""
    v = np.sign(ratings.point) + 1
    counts = _value_counts(ratings.item, v, 3, ratings.n_items)
    labelled = counts.sum(axis=1)
    unanimous_side = (counts[:, 0] == labelled) | (counts[:, 2] == labelled)
    return int(np.count_nonzero((labelled >= 2) & ~unanimous_side))


@dataclass(frozen=True)
class AgreementReport:
    """Agreement among the labels of one batch (and category)."""

    labels: int
    comparisons: int
    overlapped: int  # comparisons with two labels or more
    disagreements: int
    alpha_signed: float | None
    alpha_binary: float | None
    kappas: tuple[KappaPair, ...]
    majority: tuple[MajorityAgreement, ...]
    min_shared: int


def agreement_report(
    ratings: Ratings, *, min_shared: int = MIN_SHARED_FOR_KAPPA
) -> AgreementReport:
    """α on both readings, κ per pair, majority agreement per annotator, disagreements."""
    per_item = np.bincount(ratings.item, minlength=ratings.n_items)
    return AgreementReport(
        labels=len(ratings),
        comparisons=int(np.count_nonzero(per_item)),
        overlapped=int(np.count_nonzero(per_item >= 2)),
        disagreements=disagreement_count(ratings),
        alpha_signed=alpha_signed(ratings),
        alpha_binary=alpha_binary(ratings),
        kappas=tuple(pairwise_kappa(ratings, min_shared=min_shared)),
        majority=tuple(majority_agreement(ratings)),
        min_shared=min_shared,
    )
