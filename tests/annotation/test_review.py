"""Review and adjudication: flags (rules, reward model), the queue, verdicts, counts."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from annotation import services as annotation_services
from annotation.models import Batch, ReviewFlag, ReviewVerdict
from annotation.review import rules, selectors, services
from annotation.review.services import RewardModelContradiction
from tests.export.helpers import label
from tests.factories import BatchFactory, UserFactory, make_comparison

pytestmark = pytest.mark.django_db


@pytest.fixture
def raters():
    return [UserFactory(username=f"rater{i}", role="annotator") for i in range(3)]


@pytest.fixture
def reviewer():
    return UserFactory(username="rev", role="reviewer")


def disputed_batch(raters, *, n=3):
    """``n`` comparisons: the first disputed (A, A, B), the others unanimous (A, A, A)."""
    batch = BatchFactory(labels_per_comparison=3)
    comparisons = []
    for i in range(n):
        c = make_comparison(batch)
        for j, user in enumerate(raters):
            label(c, annotator=user, preferred="B" if (i == 0 and j == 2) else "A")
        comparisons.append(c)
    return batch, comparisons


# --- the queue and its counts ------------------------------------------------------------


def test_disagreements_and_flagged_labels_need_review_until_a_verdict(raters, reviewer):
    batch, (disputed, calm, flagged) = disputed_batch(raters)
    flagged_label = flagged.labels.first()
    services.review_flags_replace_reward_model(
        batch=batch,
        category="helpfulness",
        model_name="RM-helpfulness-V1",
        contradictions=[RewardModelContradiction(flagged_label.pk, 0.97, -1.2, 2.3)],
    )
    assert list(selectors.review_queue(batch=batch)) == [disputed, flagged]
    assert list(selectors.review_queue(batch=batch, reason="disagreement")) == [disputed]
    assert list(selectors.review_queue(batch=batch, reason="reward_model")) == [flagged]
    counts = selectors.review_counts_by_batch()[batch.pk]
    assert counts == selectors.ReviewCounts(
        disagreements=1, flagged=1, needs_review=2, reviewed=0, pending=2, flagged_annotators=0
    )

    services.review_verdict_record(
        comparison=disputed, reviewer=reviewer, accepted_label_id=disputed.labels.first().pk,
        reason="Response A answers the question; B does not.",
    )  # fmt: skip
    assert list(selectors.review_queue(batch=batch)) == [flagged]
    assert list(selectors.review_queue(batch=batch, status="reviewed")) == [disputed]
    assert list(selectors.review_queue(batch=batch, status="all")) == [disputed, flagged]
    counts = selectors.review_counts_by_batch(batch_ids=[batch.pk])[batch.pk]
    assert (counts.reviewed, counts.pending, counts.needs_review) == (1, 1, 2)
    assert selectors.review_next_pending(batch=batch, after_id=flagged.pk) == flagged.pk


def test_review_item_shows_pseudonyms_time_comments_and_flags(raters):
    batch, (disputed, *_) = disputed_batch(raters)
    first = disputed.labels.first()
    first.comment = "B rambles"
    first.save()
    item = selectors.review_item_get(comparison_id=disputed.pk)
    assert item.disagreement and len(item.labels) == 3
    names = {v.annotator for v in item.labels}
    assert len(names) == 3 and all(n.startswith("ann-") for n in names)
    assert not any("rater" in n for n in names)
    assert item.labels[0].comment == "B rambles" and item.labels[0].seconds == 12.0
    # Stable within the batch, unlike another batch's names for the same people.
    again = selectors.review_item_get(comparison_id=disputed.pk)
    assert [v.annotator for v in again.labels] == [v.annotator for v in item.labels]
    other, _ = disputed_batch(raters, n=1)
    elsewhere = selectors.review_item_get(comparison_id=other.comparisons.first().pk)
    assert not names & {v.annotator for v in elsewhere.labels}


def test_gold_checks_that_a_label_missed_need_review_not_their_disagreements(raters):
    from annotation.models import Comparison, GoldComparison

    batch = BatchFactory(labels_per_comparison=3)
    checks = []
    for source in [make_comparison(BatchFactory()) for _ in range(3)]:
        gold = GoldComparison.objects.create(
            comparison=source, preferred="A", min_strength="better"
        )
        check = make_comparison(batch)
        Comparison.objects.filter(pk=check.pk).update(is_gold=True, gold=gold)
        checks.append(check)
    said = [  # per check, what each rater said
        [("A", "significantly_better"), ("A", "better"), ("A", "better")],  # all right
        [("A", "significantly_better"), ("A", "slightly_better"), ("A", "better")],  # too weak
        [("A", "better"), ("B", "better"), ("A", "better")],  # wrong side
    ]
    for c, answers in zip(checks, said, strict=True):
        for user, (side, strength) in zip(raters, answers, strict=True):
            label(c, annotator=user, preferred=side, strength=strength)
    assert list(selectors.review_queue(batch=batch)) == checks[1:]
    assert list(selectors.review_queue(batch=batch, reason="failed_gold")) == checks[1:]
    assert list(selectors.review_queue(batch=batch, reason="disagreement")) == []
    counts = selectors.review_counts_by_batch()[batch.pk]
    assert (counts.failed_gold, counts.disagreements, counts.pending) == (2, 0, 2)
    item = selectors.review_item_get(comparison_id=checks[2].pk)
    assert item.gold_answer == "A, at least Better" and not item.disagreement
    assert [[f.reason for f in v.flags] for v in item.labels] == [[], ["failed_gold"], []]


# --- verdicts ------------------------------------------------------------------------------


def test_verdicts_append_and_the_newest_stands(raters, reviewer):
    batch, (disputed, *_) = disputed_batch(raters)
    a_label = disputed.labels.first()
    first = services.review_verdict_record(
        comparison=disputed, reviewer=reviewer, accepted_label_id=a_label.pk, reason="A is right."
    )
    assert (first.decision, first.preferred, first.strength) == ("accept", "A", "better")
    other = UserFactory(username="rev2", role="reviewer")
    second = services.review_verdict_record(
        comparison=disputed, reviewer=other, preferred="B", strength="slightly_better",
        reason="On a second reading B is more accurate.",
    )  # fmt: skip
    assert second.decision == "adjudicate" and second.accepted_label is None
    item = selectors.review_item_get(comparison_id=disputed.pk)
    assert item.verdict == second and item.verdicts == [second, first]
    first.refresh_from_db()
    assert first.preferred == "A" and first.reason == "A is right."  # untouched


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"reason": "  "}, "reason"),
        ({"reason": "x\x00"}, "reason"),
        ({"reason": "why"}, "preferred"),  # neither a label nor a choice
        ({"reason": "why", "preferred": "C", "strength": "better"}, "preferred"),
        ({"reason": "why", "preferred": "A", "strength": "huge"}, "strength"),
        ({"reason": "why", "accepted_label_id": 10**9}, "accepted_label"),
    ],
)
def test_bad_verdicts_name_the_field_and_write_nothing(raters, reviewer, kwargs, field):
    _, (disputed, *_) = disputed_batch(raters)
    with pytest.raises(ValidationError) as exc:
        services.review_verdict_record(comparison=disputed, reviewer=reviewer, **kwargs)
    assert field in exc.value.message_dict
    assert not ReviewVerdict.objects.exists()


def test_a_label_of_another_comparison_cannot_be_accepted(raters, reviewer):
    _, (disputed, calm, _) = disputed_batch(raters)
    with pytest.raises(ValidationError) as exc:
        services.review_verdict_record(
            comparison=disputed, reviewer=reviewer, accepted_label_id=calm.labels.first().pk,
            reason="why",
        )  # fmt: skip
    assert "accepted_label" in exc.value.message_dict


def test_safety_adjudication_needs_both_tags_and_records_the_bin(reviewer):
    batch = BatchFactory()
    c = make_comparison(batch, category="safety")
    label(c, annotator=UserFactory(), preferred="A", tags=("safe", "unsafe"))
    with pytest.raises(ValidationError) as exc:
        services.review_verdict_record(
            comparison=c, reviewer=reviewer, preferred="B", strength="better", reason="B"
        )
    assert {"safety_a", "safety_b"} <= set(exc.value.message_dict)
    verdict = services.review_verdict_record(
        comparison=c, reviewer=reviewer, preferred="B", strength="better",
        safety_a="unsafe", safety_b="safe", reason="A gives dangerous advice.",
    )  # fmt: skip
    assert verdict.safety_bin == "preferred_safe_other_unsafe"


def test_reviewers_never_judge_their_own_labels(raters):
    _, (disputed, *_) = disputed_batch(raters)
    with pytest.raises(ValidationError) as exc:
        services.review_verdict_record(
            comparison=disputed, reviewer=raters[0], preferred="A", strength="better", reason="x"
        )
    assert "reviewer" in exc.value.message_dict


def test_a_frozen_batch_takes_no_verdicts_nor_flags(raters, reviewer):
    batch, (disputed, *_) = disputed_batch(raters)
    batch.status = Batch.Status.CLOSED
    batch.save()
    annotation_services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
    with pytest.raises(ValidationError, match="frozen"):
        services.review_verdict_record(
            comparison=disputed, reviewer=reviewer, preferred="A", strength="better", reason="x"
        )
    with pytest.raises(ValidationError, match="frozen"):
        services.review_flags_refresh(batch=batch)
    with pytest.raises(ValidationError, match="frozen"):
        services.review_flags_replace_reward_model(
            batch=batch, category="helpfulness", model_name="RM", contradictions=[]
        )
    assert not ReviewVerdict.objects.exists() and not ReviewFlag.objects.exists()


# --- flags ---------------------------------------------------------------------------------


def test_reward_model_flags_replace_the_previous_check_and_stay_in_the_batch(raters):
    batch, comparisons = disputed_batch(raters)
    labels = [c.labels.first() for c in comparisons]
    check = services.review_flags_replace_reward_model
    check(
        batch=batch, category="helpfulness", model_name="RM-V1",
        contradictions=[RewardModelContradiction(lb.pk, 0.95, 0.0, 3.0) for lb in labels[:2]],
    )  # fmt: skip
    check(
        batch=batch, category="helpfulness", model_name="RM-V2",
        contradictions=[RewardModelContradiction(labels[2].pk, 0.99, -1.0, 4.0)],
    )  # fmt: skip
    flags = list(ReviewFlag.objects.all())
    assert [(f.label_id, f.source) for f in flags] == [(labels[2].pk, "RM-V2")]
    assert "0.99" in flags[0].detail and flags[0].comparison_id == comparisons[2].pk
    other = make_comparison(BatchFactory())
    stray = label(other, annotator=raters[0])
    with pytest.raises(ValidationError, match="Not helpfulness labels"):
        check(
            batch=batch, category="helpfulness", model_name="RM-V3",
            contradictions=[RewardModelContradiction(stray.pk, 0.99, 0.0, 5.0)],
        )  # fmt: skip
    assert ReviewFlag.objects.get().source == "RM-V2"  # all or nothing


def _rows(annotator_id, n, *, left=0.5, strengths=("better",), ms=10_000, start=0):
    return [
        rules.LabelRow(start + i, annotator_id, i < left * n, strengths[i % len(strengths)], ms)
        for i in range(n)
    ]


def test_fast_labels_are_measured_against_their_own_annotators_median():
    slow = _rows(1, 20, ms=30_000)
    quick = _rows(2, 20, ms=4_000, start=100)  # fast, but that is their pace
    slow[3] = rules.LabelRow(3, 1, True, "better", 5_000)
    found = rules.fast_labels(slow + quick)
    assert [(f.label_id, f.annotator_id) for f in found] == [(3, 1)]
    assert found[0].median_seconds == 30.0 and "5.0 s" in found[0].detail()
    few = _rows(3, 5, ms=30_000, start=200) + [rules.LabelRow(999, 3, True, "better", 100)]
    assert rules.fast_labels(few) == []  # too few labels for a median


def test_side_bias_and_strength_skew_need_a_big_and_significant_difference():
    batch = _rows(1, 100, start=0) + _rows(2, 100, start=1000)
    leftie = _rows(3, 100, left=0.9, start=2000)
    found = rules.side_bias(batch + leftie)
    assert [(f.annotator_id, f.reason) for f in found] == [(3, "side_bias")]
    assert found[0].score == 0.9 and "90%" in found[0].detail
    slightly = _rows(3, 100, left=0.6, start=2000)  # 10 points: within the gap
    assert rules.side_bias(batch + slightly) == []
    few = _rows(3, 30, left=0.8, start=2000)  # far, but on 30 labels p = 0.0014
    assert rules.side_bias(batch + few) == []
    assert [f.annotator_id for f in rules.side_bias(batch + _rows(3, 60, left=0.8))] == [3]
    spread = ("significantly_better", "better", "slightly_better", "negligibly_better_or_unsure")
    varied = _rows(1, 100, strengths=spread) + _rows(2, 100, strengths=spread, start=1000)
    always_sig = _rows(3, 60, strengths=("significantly_better",), start=2000)
    assert rules.strength_skew(varied[:100] + always_sig) == []  # two annotators: no median
    varied += _rows(4, 100, strengths=spread, start=3000)
    found = rules.strength_skew(varied + always_sig)
    assert [(f.annotator_id, f.reason) for f in found] == [(3, "strength_skew")]
    assert "Significantly better" in found[0].detail
    assert rules.strength_skew(varied + _rows(3, 60, strengths=spread, start=2000)) == []


def test_rule_flags_refresh_writes_label_and_annotator_flags(raters):
    batch = BatchFactory()
    fast_one = None
    for i in range(40):
        c = make_comparison(batch)
        for j, user in enumerate(raters):
            ms = 20_000 if not (j == 0 and i == 7) else 1_000
            # rater2 always chooses what was shown on the left
            lb = label(c, annotator=user, preferred="A", left="A" if j == 2 or i % 2 else "B",
                       time_spent_ms=ms)  # fmt: skip
            if ms == 1_000:
                fast_one = lb
    report = services.review_flags_refresh(batch=batch)
    assert (report.fast, report.side_bias, report.strength_skew) == (1, 1, 0)
    flag = ReviewFlag.objects.get(reason="fast")
    assert (flag.label_id, flag.comparison_id) == (fast_one.pk, fast_one.comparison_id)
    bias = ReviewFlag.objects.get(reason="side_bias")
    assert bias.annotator == raters[2] and bias.label is None
    # Running again replaces, never duplicates.
    services.review_flags_refresh(batch=batch)
    assert ReviewFlag.objects.count() == 2
    assert selectors.review_counts_by_batch()[batch.pk].flagged_annotators == 1
    item = selectors.review_item_get(comparison_id=fast_one.comparison_id)
    assert [f.reason for f in item.labels[0].flags] == ["fast"]
    assert list(item.annotator_flags.values()) == [
        [selectors.FlagView("side_bias", bias.get_reason_display(), bias.detail)]
    ]


def test_the_frozen_hash_covers_the_review_and_not_the_flag_ids(raters, reviewer):
    batch, (disputed, *_) = disputed_batch(raters)
    before = annotation_services.batch_content_hash(batch)
    services.review_verdict_record(
        comparison=disputed, reviewer=reviewer, preferred="B", strength="better", reason="B."
    )
    with_verdict = annotation_services.batch_content_hash(batch)
    assert with_verdict != before
    contradiction = RewardModelContradiction(disputed.labels.first().pk, 0.95, 0.0, 3.0)

    def check():
        services.review_flags_replace_reward_model(
            batch=batch, category="helpfulness", model_name="RM", contradictions=[contradiction]
        )

    check()
    flagged = annotation_services.batch_content_hash(batch)
    assert flagged != with_verdict
    check()  # the same finding again, under a new flag id
    assert annotation_services.batch_content_hash(batch) == flagged
    batch.status = Batch.Status.CLOSED
    batch.save()
    frozen = annotation_services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
    assert frozen.freeze_hash == flagged


def test_exports_carry_the_review_and_training_formats_drop_overruled_labels(
    raters, reviewer, tmp_path
):
    import json

    import pyarrow.parquet as pq

    from annotation.export import formats
    from annotation.export import services as export_services
    from annotation.export.selectors import SnapshotFilters
    from annotation.selectors import preference_pairs_frozen

    batch, (disputed, calm, flagged) = disputed_batch(raters)
    b_label = disputed.labels.get(preferred="B")
    services.review_verdict_record(
        comparison=disputed, reviewer=reviewer, accepted_label_id=b_label.pk, reason="B."
    )
    fast = flagged.labels.first()
    ReviewFlag.objects.create(
        batch=batch, comparison=flagged, label=fast, annotator=fast.annotator,
        reason="fast", detail="1 s",
    )  # fmt: skip
    ReviewFlag.objects.create(
        batch=batch, annotator=raters[2], reason="side_bias", detail="90% left"
    )
    result = export_services.snapshot_build_files(
        filters=SnapshotFilters.from_dict({"batches": [batch.name]}), work_dir=tmp_path / "s"
    )
    assert result.manifest["schema_version"] == formats.SCHEMA_VERSION == 2
    assert result.manifest["counts"]["per_review_status"] == {
        "unreviewed": 6,
        "accepted": 1,
        "overruled": 2,
    }
    rows = [json.loads(line) for line in (tmp_path / "s" / formats.FULL_JSONL).open()]
    by_id = {r["label_id"]: r for r in rows}
    for label_ in disputed.labels.all():
        row = by_id[label_.pk]
        assert row["review"]["decision"] == "accept" and row["review"]["preferred"] == "B"
        assert row["review_status"] == ("accepted" if label_.preferred == "B" else "overruled")
    assert by_id[fast.pk]["review_flags"] == ["fast"] and by_id[fast.pk]["review"] is None
    assert by_id[fast.pk]["review_status"] == "unreviewed"
    rater2 = [r for r in rows if r["label_id"] in {lb.pk for lb in raters[2].labels.all()}]
    assert all("side_bias" in r["review_flags"] for r in rater2)
    table = pq.read_table(tmp_path / "s" / formats.FULL_PARQUET).to_pylist()
    assert [r["review_status"] for r in table] == [r["review_status"] for r in rows]
    assert [r["review_flags"] for r in table] == [r["review_flags"] for r in rows]
    aggregate = [json.loads(line) for line in (tmp_path / "s" / formats.AGGREGATED_JSONL).open()]
    assert aggregate[0]["review"]["preferred"] == "B" and aggregate[1]["review"] is None
    # Two of the disputed comparison's labels were overruled: no training format has them.
    pairwise = (tmp_path / "s" / formats.PAIRWISE_JSONL).read_text().splitlines()
    assert len(pairwise) == len(rows) - 2
    batch.status = Batch.Status.CLOSED
    batch.save()
    annotation_services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
    assert len(preference_pairs_frozen(batch_ids=[batch.pk])) == len(rows) - 2


def test_closing_a_batch_runs_the_rule_checks(raters, django_capture_on_commit_callbacks):
    batch = BatchFactory(labels_per_comparison=3)
    for i in range(12):
        c = make_comparison(batch)
        for user in raters:
            label(
                c, annotator=user, time_spent_ms=500 if (user == raters[0] and i == 3) else 20_000
            )
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.OPEN)
    batch.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        annotation_services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    assert list(ReviewFlag.objects.values_list("reason", "annotator")) == [("fast", raters[0].pk)]
