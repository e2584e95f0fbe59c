"""Agreement statistics (annotation.quality.agreement): hand-computed values, the
``krippendorff`` package as the oracle for α, and the PandaLM test set (three annotators
per pair) as the real fixture."""

import krippendorff
import numpy as np
import pytest

from annotation import services
from annotation.models import Comparison
from annotation.quality import agreement as ag
from annotation.quality import selectors
from tests.factories import BatchFactory

SIG, BETTER, SLIGHT, NEG = (
    "significantly_better",
    "better",
    "slightly_better",
    "negligibly_better_or_unsure",
)


def ratings(rows):
    return ag.Ratings.from_labels(rows)


def test_signed_scale_points():
    assert ag.signed_point("A", SIG) == 3 and ag.signed_point("B", SIG) == -3
    assert ag.signed_point("A", SLIGHT) == 1 and ag.signed_point("B", BETTER) == -2
    # Negligibly better / unsure is the middle, whichever side was picked.
    assert ag.signed_point("A", NEG) == ag.signed_point("B", NEG) == 0
    assert ag.signed_point("B", "") == -ag.UNRATED_POINT
    with pytest.raises(ValueError, match="preferred"):
        ag.signed_point("C", SIG)


def test_weighted_kappa_by_hand():
    # Two points only: linear weights are then plain κ. po = 3/4, pe = 3/4·1/2 + 1/4·1/2 = 1/2.
    assert ag.cohen_kappa_linear([2, 2, 2, -2], [2, 2, -2, -2]) == pytest.approx(0.5)
    # Three points (A, tie, B), by hand: Σ w·observed = 2 + 2 = 4; Σ w·expected = 32 / 4 = 8.
    assert ag.cohen_kappa_linear([2, 0, -2, 2], [2, -2, -2, 0]) == pytest.approx(0.5)
    # A strength step costs less than a side: 1 - (1 + 1) / Σ w·E, Σ w·E = 40 / 4.
    assert ag.cohen_kappa_linear([3, 2, -2, -3], [2, 2, -2, -2]) == pytest.approx(1 - 2 / 10)
    assert ag.cohen_kappa_linear([1, 1], [1, 1]) is None  # chance alone agrees perfectly


def test_nominal_alpha_by_hand():
    # Two coders, four items; they differ on one. Coincidences: o_AA 4, o_BB 2, o_AB = o_BA = 1;
    # n_A 5, n_B 3, n 8: α = 1 - (n - 1)·2 / (2·n_A·n_B) = 1 - 14/30.
    r = ratings(
        [(1, "x", "A", ""), (1, "y", "A", "")]
        + [(2, "x", "A", ""), (2, "y", "A", "")]
        + [(3, "x", "B", ""), (3, "y", "B", "")]
        + [(4, "x", "A", ""), (4, "y", "B", "")]
    )
    assert ag.alpha_binary(r) == pytest.approx(1 - 14 / 30)


def test_alpha_matches_the_package_on_random_sparse_data():
    rng = np.random.default_rng(7)
    n_raters, n_items = 6, 300
    matrix = np.full((n_raters, n_items), np.nan)
    rows = []
    for i in range(n_items):
        truth = rng.integers(-3, 4)
        for r in rng.choice(n_raters, size=rng.integers(1, 5), replace=False):
            point = int(np.clip(truth + rng.integers(-1, 2), -3, 3))
            side = "A" if point > 0 or (point == 0 and rng.random() < 0.5) else "B"
            strength = {3: SIG, 2: BETTER, 1: SLIGHT, 0: NEG}[abs(point)]
            rows.append((i, f"r{r}", side, strength))
            matrix[r, i] = point
    r = ratings(rows)
    expected = krippendorff.alpha(matrix, level_of_measurement="ordinal")
    assert ag.alpha_signed(r) == pytest.approx(expected)
    sides = np.full((n_raters, n_items), np.nan)
    for item, rater, side, _ in rows:
        sides[int(rater[1:]), item] = side == "B"
    assert ag.alpha_binary(r) == pytest.approx(
        krippendorff.alpha(sides, level_of_measurement="nominal")
    )


def test_alpha_is_none_when_undefined():
    assert ag.alpha_signed(ratings([(1, "x", "A", SIG)])) is None  # nothing pairable
    same = ratings([(1, "x", "A", SIG), (1, "y", "A", SIG), (2, "x", "A", SIG), (2, "y", "A", SIG)])
    assert ag.alpha_signed(same) is None  # one value throughout: no disagreement to expect


def test_majority_agreement_and_disagreements_by_hand():
    r = ratings(
        [(1, "x", "A", BETTER), (1, "y", "A", SIG), (1, "z", "B", BETTER)]  # z against A,A
        + [(2, "x", "B", SLIGHT), (2, "y", "B", BETTER), (2, "z", "B", SIG)]  # unanimous B
        + [(3, "x", "A", NEG), (3, "y", "B", SLIGHT), (3, "z", "A", BETTER)]  # three verdicts
        + [(4, "x", "A", BETTER)]  # alone: no others
    )
    by = {m.rater: m for m in ag.majority_agreement(r)}
    # x: item 1 others (A, B) no majority; item 2 others (B, B) agree; item 3 others (B, A) none.
    assert (by["x"].labels, by["x"].compared, by["x"].agreed) == (4, 1, 1)
    # z: item 1 others (A, A) → disagrees; item 2 agrees; item 3 others (unsure, B): none.
    assert (by["z"].compared, by["z"].agreed, by["z"].rate) == (2, 1, 0.5)
    # Items 1 (sides differ) and 3 (an unsure label) disagree; item 2 is unanimous.
    assert ag.disagreement_count(r) == 2
    report = ag.agreement_report(r, min_shared=3)
    assert (report.labels, report.comparisons, report.overlapped) == (10, 4, 3)
    kappas = {(k.rater_a, k.rater_b): k for k in report.kappas}
    assert kappas[("x", "y")].shared == 3 and kappas[("x", "y")].kappa is not None
    assert ag.agreement_report(r, min_shared=4).kappas[0].kappa is None


def test_unrated_labels_read_as_a_three_point_scale():
    """Ordinal α only sees the order of the points used: unrated A/B around ties gives the
    same α as the three-point scale B < tie < A."""
    rows, matrix = [], np.full((3, 60), np.nan)
    rng = np.random.default_rng(1)
    for i in range(60):
        for r in range(3):
            v = int(rng.integers(-1, 2))
            matrix[r, i] = v
            side = "A" if v > 0 else "B" if v < 0 else "AB"[i % 2]
            rows.append((i, str(r), side, NEG if v == 0 else ""))
    got = ag.alpha_signed(ratings(rows))
    assert got == pytest.approx(krippendorff.alpha(matrix, level_of_measurement="ordinal"))


PANDALM_VALUE = {1: 1, 2: -1, 0: 0}  # response1 (A) better, response2 (B) better, tie


@pytest.mark.shared_data
@pytest.mark.django_db
def test_pandalm_testset_agreement_matches_the_package(shared_data, django_assert_max_num_queries):
    path = shared_data / "pandalm-testset" / "data" / "testset-v1.json"
    batch = BatchFactory()
    with open(path, "rb") as f:
        services.comparisons_import(batch=batch, stream=f, fmt="pandalm", skip_invalid=True)
    # The raw judgements of the rows imported (some are refused: booleans, duplicates),
    # as the file has them: the importer keeps them verbatim in each comparison's metadata.
    rows = [c.metadata for c in Comparison.objects.filter(batch=batch)]
    assert len(rows) > 800
    keys = ("annotator1", "annotator2", "annotator3")
    matrix = np.array([[PANDALM_VALUE[r[k]] for r in rows] for k in keys], float)
    imported = rows
    with django_assert_max_num_queries(4):
        quality = selectors.batch_quality(batch.pk)
    ((category, report),) = quality.by_category
    assert report.labels == 3 * len(imported) == 3 * matrix.shape[1]
    assert report.alpha_signed == pytest.approx(
        krippendorff.alpha(matrix, level_of_measurement="ordinal")
    )
    assert 0.8 < report.alpha_signed < 0.95  # PandaLM's raters agree well (879/999 unanimous)
    # Binary α: ties sit on the side the importer's coin gave them, as stored.
    assert report.alpha_binary is not None and 0.6 < report.alpha_binary < 0.95
    assert len(report.kappas) == 3 and all(k.shared == len(imported) for k in report.kappas)
    for k in report.kappas:
        x = matrix[keys.index(k.rater_a.split(":")[1])].astype(int)
        y = matrix[keys.index(k.rater_b.split(":")[1])].astype(int)
        # Linear weights on B < tie < A, computed here from the file by hand.
        w = np.abs(np.subtract.outer([-1, 0, 1], [-1, 0, 1]))
        o = np.array([[np.sum((x == i) & (y == j)) for j in (-1, 0, 1)] for i in (-1, 0, 1)])
        e = np.outer(o.sum(1), o.sum(0)) / o.sum()
        assert k.kappa == pytest.approx(1 - (w * o).sum() / (w * e).sum())
    unanimous = int(np.sum((matrix == matrix[0]).all(axis=0) & (matrix[0] != 0)))
    assert report.disagreements == len(imported) - unanimous
    assert {a.name for a in quality.annotators} == {f"pandalm:{k}" for k in keys}
    assert all(0.9 < a.majority_rate < 1 for a in quality.annotators)
