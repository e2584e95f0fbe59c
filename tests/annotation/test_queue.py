"""The annotator queue: claims, labels, skips, idempotency, batch lifecycle."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection

from annotation import selectors, services
from annotation.domain import Category, SafetyBin, Strength
from annotation.models import Assignment, Batch, Comparison, Label
from annotation.queue import assignments, labels, reads, rules
from tests.factories import BatchFactory, UserFactory, make_comparison, open_batch_with

pytestmark = pytest.mark.django_db


def label(assignment, annotator, **kw):
    data = rules.LabelInput(**{"preferred": "A", "strength": Strength.BETTER, **kw})
    return labels.label_submit(assignment_id=assignment.pk, annotator=annotator, data=data)


def test_queue_hands_out_each_comparison_once_then_runs_dry(annotator):
    open_batch_with(3)
    seen = []
    while (a := assignments.assignment_next(annotator=annotator)) is not None:
        assert assignments.assignment_next(annotator=annotator).pk == a.pk  # resumes, no new claim
        label(a, annotator)
        seen.append(a.comparison_id)
    assert len(seen) == len(set(seen)) == 3
    assert Label.objects.filter(annotator=annotator).count() == 3


def test_single_annotation_task_not_given_to_two_annotators():
    open_batch_with(1)
    first, second = UserFactory(role="annotator"), UserFactory(role="annotator")
    assert assignments.assignment_next(annotator=first) is not None
    assert assignments.assignment_next(annotator=second) is None


def test_multi_annotation_task_goes_to_distinct_annotators():
    open_batch_with(1, labels_per_comparison=2)
    users = [UserFactory(role="annotator") for _ in range(3)]
    got = [assignments.assignment_next(annotator=u) for u in users]
    assert got[0] and got[1] and got[0].comparison_id == got[1].comparison_id
    assert got[2] is None


def test_label_is_idempotent(annotator):
    open_batch_with(1)
    a = assignments.assignment_next(annotator=annotator)
    first, created1 = label(a, annotator)
    again, created2 = label(a, annotator, preferred="B")
    assert (created1, created2) == (True, False)
    assert again.pk == first.pk and again.preferred == "A"
    assert Label.objects.count() == 1


def test_label_records_display_order_and_time(annotator):
    open_batch_with(1)
    a = assignments.assignment_next(annotator=annotator)
    lab, _ = label(a, annotator, time_spent_ms=4321, comment="  clear winner ")
    assert lab.left == a.left and lab.left in ("A", "B")
    assert lab.time_spent_ms == 4321 and lab.comment == "clear winner"


def test_left_order_is_randomised_across_annotators():
    batch = open_batch_with(1, labels_per_comparison=40)
    lefts = {
        assignments.assignment_next(annotator=UserFactory(role="annotator")).left for _ in range(40)
    }
    assert lefts == {"A", "B"}
    assert batch.comparisons.get().claims == 40


def test_safety_label_requires_tags_and_derives_bin(annotator):
    open_batch_with(1, category=Category.SAFETY)
    a = assignments.assignment_next(annotator=annotator)
    with pytest.raises(ValidationError) as err:
        label(a, annotator)
    assert "safety_a" in err.value.message_dict
    lab, _ = label(a, annotator, preferred="B", safety_a="safe", safety_b="unsafe")
    assert lab.safety_bin == SafetyBin.PREFERRED_UNSAFE_OTHER_SAFE


def test_invalid_strength_names_the_field(annotator):
    open_batch_with(1)
    a = assignments.assignment_next(annotator=annotator)
    with pytest.raises(ValidationError) as err:
        label(a, annotator, strength="meh")
    assert "strength" in err.value.message_dict
    assert not Label.objects.exists()


def test_annotator_cannot_label_someone_elses_assignment(annotator):
    open_batch_with(1)
    a = assignments.assignment_next(annotator=annotator)
    other = UserFactory(role="annotator")
    with pytest.raises(assignments.AssignmentGone) as theirs:
        label(a, other)
    assert reads.task_get(assignment_id=a.pk, annotator=other) is None
    # Another annotator's task is indistinguishable from one that does not exist.
    missing = Assignment.objects.order_by("-pk").first().pk + 1000
    with pytest.raises(assignments.AssignmentGone) as gone:
        labels.label_submit(
            assignment_id=missing, annotator=other, data=rules.LabelInput("A", "better")
        )
    assert theirs.value.message_dict == gone.value.message_dict
    assert not Label.objects.exists()


def test_skip_frees_the_slot_for_others_but_not_the_skipper(annotator):
    open_batch_with(1)
    a = assignments.assignment_next(annotator=annotator)
    with pytest.raises(ValidationError):
        assignments.assignment_skip(assignment_id=a.pk, annotator=annotator, reason="  ")
    assignments.assignment_skip(assignment_id=a.pk, annotator=annotator, reason="Not my language")
    assert assignments.assignment_next(annotator=annotator) is None
    other = UserFactory(role="annotator")
    assert assignments.assignment_next(annotator=other).comparison_id == a.comparison_id


def test_cannot_label_in_closed_batch(annotator):
    batch = open_batch_with(2)
    a = assignments.assignment_next(annotator=annotator)
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    assert assignments.assignment_next(annotator=annotator) is None
    with pytest.raises(ValidationError):
        label(a, annotator)


def test_expired_assignments_return_to_pool(annotator):
    open_batch_with(1)
    assignments.assignment_next(annotator=annotator)
    assert assignments.assignments_release_expired(ttl_seconds=3600) == 0
    assert assignments.assignments_release_expired(ttl_seconds=-1) == 1
    assert Comparison.objects.get().claims == 0
    other = UserFactory(role="annotator")
    assert assignments.assignment_next(annotator=other) is not None


def test_batch_lifecycle_and_freeze_hash(annotator):
    batch = BatchFactory()
    with pytest.raises(ValidationError):
        services.batch_transition(batch=batch, to=Batch.Status.OPEN)  # empty
    make_comparison(batch)
    services.batch_transition(batch=batch, to=Batch.Status.OPEN)
    with pytest.raises(ValidationError):
        services.batch_transition(batch=batch, to=Batch.Status.FROZEN)  # must close first
    label(assignments.assignment_next(annotator=annotator), annotator)
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    frozen = services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
    assert len(frozen.freeze_hash) == 64
    assert frozen.freeze_hash == services.batch_content_hash(frozen)
    for to in Batch.Status.values:
        with pytest.raises(ValidationError):
            services.batch_transition(batch=frozen, to=to)
    with pytest.raises(ValidationError):
        make_comparison(frozen)


def test_progress_counts(annotator):
    batch = open_batch_with(4, labels_per_comparison=2)
    label(assignments.assignment_next(annotator=annotator), annotator)
    assignments.assignment_next(annotator=annotator)
    p = selectors.batch_progress(batch)
    assert (p.comparisons, p.labels_wanted, p.labels, p.in_progress) == (4, 8, 1, 1)
    counts = reads.annotator_counts(annotator)
    assert counts.done == 1 and counts.remaining == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_annotators_never_share_a_single_annotation_task():
    open_batch_with(20)
    users = [UserFactory(role="annotator") for _ in range(10)]
    results: dict[int, list[int]] = {}
    barrier = threading.Barrier(len(users))

    def work(user):
        close_old_connections()
        barrier.wait()
        got = []
        while (a := assignments.assignment_next(annotator=user)) is not None:
            label(a, user)
            got.append(a.comparison_id)
        results[user.pk] = got
        connection.close()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [c for got in results.values() for c in got]
    assert sorted(all_ids) == sorted(Comparison.objects.values_list("id", flat=True))
    assert Label.objects.count() == 20
    assert Assignment.objects.filter(status="labelled").count() == 20


def _counter_matches_assignments() -> None:
    from django.db.models import Count

    from annotation.models import AnnotatorBatchCount

    expected: dict = {}
    rows = (
        Assignment.objects.exclude(status=Assignment.Status.ASSIGNED)
        .values_list("annotator_id", "comparison__batch_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for annotator_id, batch_id, status, n in rows:
        row = expected.setdefault((annotator_id, batch_id), [0, 0])
        row[0 if status == Assignment.Status.LABELLED else 1] += n
    got = {
        (c.annotator_id, c.batch_id): [c.done, c.skipped] for c in AnnotatorBatchCount.objects.all()
    }
    assert got == expected


def test_done_counter_follows_labels_skips_and_open_batches(annotator):
    """``AnnotatorBatchCount`` equals the labelled / skipped assignments, whatever the
    path (label, retry, label-and-next, skip), and only open batches count as done."""
    first = open_batch_with(4)
    a = assignments.assignment_next(annotator=annotator)
    label(a, annotator)
    label(a, annotator)  # a retry adds nothing
    b = assignments.assignment_next(annotator=annotator)
    data = rules.LabelInput(preferred="B", strength=Strength.SLIGHTLY_BETTER)
    _, _, c = labels.label_submit_and_next(assignment_id=b.pk, annotator=annotator, data=data)
    assignments.assignment_skip(
        assignment_id=c.assignment_id, annotator=annotator, reason="broken prompt"
    )
    assignments.assignment_skip(assignment_id=c.assignment_id, annotator=annotator, reason="again")
    other = UserFactory(role="annotator")
    label(assignments.assignment_next(annotator=other), other)
    _counter_matches_assignments()
    counts = reads.annotator_counts(annotator)
    assert (counts.done, counts.skipped) == (2, 1)
    services.batch_transition(batch=first, to=Batch.Status.CLOSED)
    counts = reads.annotator_counts(annotator)
    assert (counts.done, counts.skipped) == (0, 0)
    services.batch_transition(batch=first, to=Batch.Status.OPEN)
    assert reads.annotator_counts(annotator).done == 2
