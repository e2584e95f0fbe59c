"""PostgreSQL plans of the queue's hot statements, and their re-preparation.

The claim and the remaining count walk the ``comparison_open_slots`` index in queue order
and stop at their limit, probing the annotator's history one row at a time. Two plans
once made them slow, and these tests keep them out:

- ``NOT EXISTS`` became an anti-join that read the annotator's whole history first
  (O(history) per label);
- the planner rated ``(subquery) IS NULL`` at 0.5 % selectivity, expected few rows,
  and sorted the whole open batch instead of walking the index (38 ms at 35k rows).

Quality control adds conditions that must keep that shape: the gold branch (a one-time
filter on the claim's draw, its own walk), the uncertainty order (priority in the index,
never a sort), and the pause probe (once per open batch).
"""

import hashlib

import pytest
from django.db import connection
from django.utils import timezone

from annotation import prepared
from annotation.gold import services as gold_services
from annotation.models import AnnotatorBatchCount, Assignment, Batch, Comparison, GoldComparison
from annotation.queue import assignments, reads, statements
from tests.factories import UserFactory, open_batch_with

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

OPEN_COMPARISONS = 4000
HISTORY = 300


@pytest.fixture
def busy_queue():
    """An open batch of 4,000 comparisons; the annotator has labelled the first 300."""
    batch = open_batch_with(1)
    template = Comparison.objects.get(batch=batch)
    now = timezone.now()
    Comparison.objects.bulk_create(
        Comparison(
            batch=batch,
            prompt_id=template.prompt_id,
            response_a_id=template.response_a_id,
            response_b_id=template.response_b_id,
            category=template.category,
            content_hash=hashlib.sha256(str(n).encode()).hexdigest(),
            created_at=now,
        )
        for n in range(OPEN_COMPARISONS - 1)
    )
    annotator = UserFactory(role="annotator")
    done = list(Comparison.objects.filter(batch=batch).order_by("id")[:HISTORY])
    Assignment.objects.bulk_create(
        Assignment(
            comparison=c,
            annotator=annotator,
            left="A",
            status=Assignment.Status.LABELLED,
            assigned_at=now,
            finished_at=now,
        )
        for c in done
    )
    Comparison.objects.filter(pk__in=[c.pk for c in done]).update(claims=1)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_comparison, annotation_assignment")
    return annotator


def _generic_plan(sql: str, params: list) -> dict:
    """EXPLAIN ANALYZE of ``sql``'s generic plan (the one a prepared statement keeps)."""
    text, order = prepared.numbered(sql)
    values = [params[key] for key in order]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE plan_probe AS {text}")
        try:
            placeholders = ", ".join(["%s"] * len(values))
            cursor.execute(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE plan_probe({placeholders})", values
            )
            plan = cursor.fetchone()[0]
        finally:
            cursor.execute("DEALLOCATE plan_probe")
    return plan[0]["Plan"] if isinstance(plan, list) else plan["Plan"]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _walks_of_open_slots(plan: dict) -> list[dict]:
    walks = [n for n in _nodes(plan) if n.get("Index Name") == "comparison_open_slots"]
    assert walks, "the free slots are found by walking comparison_open_slots"
    return walks


def _assert_walks_and_probes(plan: dict, *, limit: int) -> None:
    nodes = list(_nodes(plan))
    assert not [n for n in nodes if "Anti" in n.get("Join Type", "")], "no anti-join"
    sorts = [n for n in nodes if n["Node Type"] == "Sort" and "c.claims" in str(n.get("Sort Key"))]
    assert not sorts, "the open batch is walked in index order, not sorted"
    for walk in _walks_of_open_slots(plan):
        assert walk["Node Type"] in ("Index Scan", "Index Only Scan")
        # It stops at the limit: it read the free rows it needed, not the batch.
        assert walk["Actual Rows"] * walk["Actual Loops"] <= limit
        # "Never assigned to me" is a probe per row walked (a subplan of the walk), by index.
        probes = [n for n in _nodes(walk) if n.get("Relation Name") == Assignment._meta.db_table]
        assert probes and all(n["Node Type"] != "Seq Scan" for n in probes)


def test_remaining_count_walks_the_index_and_stops_at_the_cap(busy_queue):
    annotator = busy_queue
    plan = _generic_plan(
        statements.counts_sql(statements.REMAINING_COUNT_CAP), reads.counts_params(annotator)
    )
    _assert_walks_and_probes(plan, limit=statements.REMAINING_COUNT_CAP)
    counts = reads.annotator_counts(annotator)
    assert counts.remaining == statements.REMAINING_COUNT_CAP and counts.remaining_capped


def test_claim_walks_the_index_and_takes_the_first_free_row(busy_queue):
    annotator = busy_queue
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT plan")
        plan = _generic_plan(statements.comparison_claim_sql(), {"me": annotator.pk, "draw": 1.0})
        cursor.execute("ROLLBACK TO SAVEPOINT plan")
    _assert_walks_and_probes(plan, limit=1)
    first_free = (
        Comparison.objects.filter(batch__status=Batch.Status.OPEN, claims=0)
        .exclude(assignments__annotator=annotator)
        .order_by("id")
        .first()
    )
    assert assignments.assignment_next(annotator=annotator).comparison_id == first_free.pk


def test_statements_are_prepared_again_as_they_run():
    """A plan made while the tables were small is replaced after 16, 32, 64… runs."""
    annotator = UserFactory(role="annotator")
    open_batch_with(1)
    with connection.cursor() as cursor:  # as on a new connection: nothing prepared yet
        cursor.execute("DEALLOCATE ALL")
    connection._pairwise_prepared = None

    def prepared_at():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT prepare_time FROM pg_prepared_statements WHERE name = 'pairwise_counts_100'"
            )
            return cursor.fetchone()[0]

    reads.annotator_counts(annotator)
    first = prepared_at()
    for _ in range(prepared.REPREPARE_FIRST - 1):
        reads.annotator_counts(annotator)
    assert prepared_at() == first  # 16 runs on the first plan
    reads.annotator_counts(annotator)
    second = prepared_at()
    assert second > first
    for _ in range(prepared.REPREPARE_FIRST - 1):
        reads.annotator_counts(annotator)
    assert prepared_at() == second  # next after 32 runs in all, then 64, …
    reads.annotator_counts(annotator)
    assert prepared_at() > second


def test_prepared_statements_are_planned_once_generically():
    """No custom plans: PostgreSQL's default plans the first five runs of a prepared
    statement with their parameters (3 ms each for the next-task statement) before it
    settles on the generic plan; the settings make the generic plan the first."""
    annotator = UserFactory(role="annotator")
    open_batch_with(3)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    connection._pairwise_prepared = None
    for _ in range(5):
        task = assignments.task_next(annotator=annotator)
        assert task is not None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE name = 'pairwise_task_next'"
        )
        generic, custom = cursor.fetchone()
    assert (generic, custom) == (5, 0)


def test_next_task_statement_claims_only_when_nothing_is_in_hand(busy_queue):
    """``assignments.task_next`` on PostgreSQL: current task, else claim, in one statement."""
    annotator = busy_queue
    params = {**reads.counts_params(annotator), "left": "A", "now": timezone.now(), "draw": 1.0}
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT plan")
        claiming = _generic_plan(statements.task_next_sql(), params)
        cursor.execute("ROLLBACK TO SAVEPOINT plan")
    _assert_walks_and_probes(claiming, limit=statements.REMAINING_COUNT_CAP)
    task = assignments.task_next(annotator=annotator)
    assert task.counts.remaining == statements.REMAINING_COUNT_CAP
    claims = Comparison.objects.filter(claims__gt=0).count()
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT plan")
        holding = _generic_plan(statements.task_next_sql(), params)
        cursor.execute("ROLLBACK TO SAVEPOINT plan")
    claim_walk = [n for n in _walks_of_open_slots(holding) if n["Actual Loops"] == 0]
    assert claim_walk, "with a task in hand, the claim's walk never runs (nothing is locked)"
    again = assignments.task_next(annotator=annotator)
    assert again.assignment_id == task.assignment_id
    assert Comparison.objects.filter(claims__gt=0).count() == claims


@pytest.fixture
def busy_queue_with_gold(busy_queue):
    """``busy_queue`` with 200 gold checks in the batch (rate 0.05) and priorities set."""
    annotator = busy_queue
    batch = Batch.objects.get(status=Batch.Status.OPEN)
    template = Comparison.objects.filter(batch=batch).first()
    source = Batch.objects.create(name="gold-source")
    golds = GoldComparison.objects.bulk_create(
        GoldComparison(
            comparison=Comparison.objects.create(
                batch=source,
                prompt_id=template.prompt_id,
                response_a_id=template.response_a_id,
                response_b_id=template.response_b_id,
                category=template.category,
                content_hash=hashlib.sha256(f"g{n}".encode()).hexdigest(),
            ),
            preferred="A",
        )
        for n in range(200)
    )
    Batch.objects.filter(pk=batch.pk).update(gold_rate=0.05, queue_order="margin")
    gold_services.batch_gold_sync(batch=Batch.objects.get(pk=batch.pk))
    assert Comparison.objects.filter(batch=batch, is_gold=True).count() == len(golds)
    # Uncertainty scores on the batch's own work, in no relation to id order.
    for c in Comparison.objects.filter(batch=batch, is_gold=False, claims=0)[:500]:
        Comparison.objects.filter(pk=c.pk).update(priority=(c.pk * 7919 % 1000) / 1000 + 0.001)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE annotation_comparison, annotation_assignment")
    return annotator


def _claim_plan(annotator, draw: float) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT plan")
        plan = _generic_plan(statements.comparison_claim_sql(), {"me": annotator.pk, "draw": draw})
        cursor.execute("ROLLBACK TO SAVEPOINT plan")
    return plan


def test_gold_branch_is_a_one_time_filter_that_never_runs_above_the_rate(busy_queue_with_gold):
    annotator = busy_queue_with_gold
    plan = _claim_plan(annotator, draw=0.5)
    _assert_walks_and_probes(plan, limit=1)
    assert [w for w in _walks_of_open_slots(plan) if w["Actual Loops"] == 0], (
        "above the gold rate, the gold walk never runs"
    )
    sorts = [
        n for n in _nodes(plan) if n["Node Type"] == "Sort" and "priority" in str(n["Sort Key"])
    ]
    assert not sorts, "priority order is the index's order, not a sort"


def test_gold_branch_below_the_rate_walks_the_index_and_takes_a_gold_check(
    busy_queue_with_gold, monkeypatch
):
    annotator = busy_queue_with_gold
    plan = _claim_plan(annotator, draw=0.0)
    _assert_walks_and_probes(plan, limit=1)
    ran = [w for w in _walks_of_open_slots(plan) if w["Actual Loops"] > 0]
    assert len(ran) >= 2, "the gold walk and the own-work probe both ran"
    monkeypatch.setattr(assignments, "gold_draw", lambda: 0.0)
    claimed = assignments.assignment_next(annotator=annotator)
    assert Comparison.objects.get(pk=claimed.comparison_id).is_gold


def test_uncertainty_order_claims_the_highest_priority_without_sorting(busy_queue_with_gold):
    annotator = busy_queue_with_gold
    best = (
        Comparison.objects.filter(batch__status=Batch.Status.OPEN, is_gold=False, claims=0)
        .exclude(assignments__annotator=annotator)
        .order_by("-priority", "id")
        .first()
    )
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT plan")
        plan = _generic_plan(
            statements.counts_sql(statements.REMAINING_COUNT_CAP), reads.counts_params(annotator)
        )
        cursor.execute("ROLLBACK TO SAVEPOINT plan")
    _assert_walks_and_probes(plan, limit=statements.REMAINING_COUNT_CAP)
    claimed = assignments.assignment_next(annotator=annotator)
    assert claimed.comparison_id == best.pk


def test_paused_annotator_is_probed_once_per_open_batch(busy_queue):
    annotator = busy_queue
    batch = Batch.objects.get(status=Batch.Status.OPEN)
    AnnotatorBatchCount.objects.create(annotator=annotator, batch=batch, paused=True)
    plan = _claim_plan(annotator, draw=1.0)
    probes = [
        n for n in _nodes(plan) if n.get("Relation Name") == AnnotatorBatchCount._meta.db_table
    ]
    assert probes and all(n["Actual Loops"] <= 1 for n in probes)
    assert not [w for w in _walks_of_open_slots(plan) if w["Actual Loops"] > 0], (
        "a paused batch's comparisons are never walked"
    )
    assert assignments.assignment_next(annotator=annotator) is None
