"""Reads for snapshots: which labels a filter selects, their rows, counts and distributions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, overload

from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connections
from django.db.models import Count, ExpressionWrapper, F, FloatField, Q, QuerySet
from django.db.models.functions import Greatest

from annotation.domain import Category, SafetyBin, Strength, text_problem
from annotation.export.formats import DemonstrationRow, LabelRow, ResponseRow, ReviewRow
from annotation.models import Batch, Comparison, Demonstration, Label, Snapshot
from annotation.review.selectors import review_state

UNRATED = "unrated"  # the strength filter's name for labels without a strength
NO_BIN = "none"  # the safety-bin filter's name for labels without a bin (helpfulness)
LAST_DATE = date.max  # filter dates are before it: the day after date_to bounds the query


@dataclass(frozen=True)
class SnapshotFilters:
    """What a snapshot selects. Empty tuples mean "all"; every filter narrows.

    ``min_agreement`` keeps comparisons whose majority side has at least that share of
    the comparison's labels (all its labels, not only the ones other filters keep);
    ``min_annotators`` keeps comparisons with at least that many labels. Dates are the
    labels' creation days in UTC, both ends inclusive.
    """

    batches: tuple[str, ...] = ()  # batch names
    categories: tuple[str, ...] = ()
    strengths: tuple[str, ...] = ()
    safety_bins: tuple[str, ...] = ()
    min_agreement: float | None = None
    min_annotators: int | None = None
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotFilters:
        """Validate and normalise filters from a form, the API or the command line."""
        errors: dict[str, str] = {}

        def names(key: str, allowed: set[str] | None) -> tuple[str, ...]:
            value = data.get(key) or []
            if isinstance(value, str):
                value = [v for v in (p.strip() for p in value.split(",")) if v]
            value = tuple(sorted({str(v) for v in value}))
            if problems := [p for v in value if (p := text_problem(v))]:
                errors[key] = f"A value {problems[0]}."
                return ()  # not a query parameter PostgreSQL can take
            if allowed is not None and (bad := [v for v in value if v not in allowed]):
                errors[key] = f"Unknown value(s) {bad}; choose from {sorted(allowed)}."
            return value

        batches = names("batches", None)
        known = set(Batch.objects.filter(name__in=batches).values_list("name", flat=True))
        if missing := sorted(set(batches) - known):
            errors["batches"] = f"No batch named {', '.join(map(repr, missing))}."
        result: dict[str, Any] = {
            "batches": batches,
            "categories": names("categories", {c.value for c in Category}),
            "strengths": names("strengths", {s.value for s in Strength} | {UNRATED}),
            "safety_bins": names("safety_bins", {b.value for b in SafetyBin} | {NO_BIN}),
        }
        for key, kind in (("min_agreement", float), ("min_annotators", int)):
            value = data.get(key)
            if value in (None, ""):
                result[key] = None
                continue
            try:
                result[key] = kind(value)
            except (TypeError, ValueError):
                errors[key] = f"Must be a number, got {value!r}."
                continue
        if result.get("min_agreement") is not None and not 0 <= result["min_agreement"] <= 1:
            errors["min_agreement"] = (
                "Must be between 0 and 1 (e.g. 0.67 for two annotators out of three)."
            )
        if result.get("min_annotators") is not None and result["min_annotators"] < 1:
            errors["min_annotators"] = "Must be at least 1."
        for key in ("date_from", "date_to"):
            value = data.get(key)
            if value in (None, ""):
                result[key] = None
            elif isinstance(value, date):
                result[key] = value
            else:
                try:
                    result[key] = date.fromisoformat(str(value))
                except ValueError:
                    errors[key] = f"Must be a date like 2026-11-02, got {value!r}."
            if result.get(key) is not None and result[key] >= LAST_DATE:
                errors[key] = f"Must be a date before {LAST_DATE.isoformat()}."
        if (
            not errors
            and result["date_from"]
            and result["date_to"]
            and result["date_from"] > result["date_to"]
        ):
            errors["date_to"] = "Must not be before the start date."
        if errors:
            raise ValidationError(errors)
        return cls(**result)

    def as_dict(self) -> dict[str, Any]:
        """Canonical JSON form: part of the snapshot's hash and manifest."""
        return {
            "batches": list(self.batches),
            "categories": list(self.categories),
            "strengths": list(self.strengths),
            "safety_bins": list(self.safety_bins),
            "min_agreement": self.min_agreement,
            "min_annotators": self.min_annotators,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
        }


def labels_selected(
    filters: SnapshotFilters, *, max_label_id: int | None = None
) -> QuerySet[Label]:
    """The labels a snapshot with ``filters`` contains (``max_label_id`` pins a build's view)."""
    qs = Label.objects.all()
    if max_label_id is not None:
        qs = qs.filter(id__lte=max_label_id)
    if filters.batches:
        qs = qs.filter(comparison__batch__name__in=filters.batches)
    if filters.categories:
        qs = qs.filter(comparison__category__in=filters.categories)
    if filters.strengths:
        wanted = [s for s in filters.strengths if s != UNRATED] + (
            [""] if UNRATED in filters.strengths else []
        )
        qs = qs.filter(strength__in=wanted)
    if filters.safety_bins:
        wanted = [b for b in filters.safety_bins if b != NO_BIN] + (
            [""] if NO_BIN in filters.safety_bins else []
        )
        qs = qs.filter(safety_bin__in=wanted)
    if filters.date_from:
        qs = qs.filter(created_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=UTC))
    if filters.date_to:
        qs = qs.filter(
            created_at__lt=datetime.combine(
                filters.date_to + timedelta(days=1), time.min, tzinfo=UTC
            )
        )
    if filters.min_agreement is not None or filters.min_annotators is not None:
        comparisons = Comparison.objects.annotate(
            n=Count("labels"), n_a=Count("labels", filter=Q(labels__preferred="A"))
        ).annotate(top=Greatest("n_a", F("n") - F("n_a")))
        if filters.min_agreement is not None:
            comparisons = comparisons.filter(
                top__gte=ExpressionWrapper(
                    F("n") * filters.min_agreement, output_field=FloatField()
                ),
                n__gt=0,
            )
        if filters.min_annotators is not None:
            comparisons = comparisons.filter(n__gte=filters.min_annotators)
        qs = qs.filter(comparison_id__in=comparisons.values("id"))
    return qs


# One label row as a single joined query: what bench/export_rows.py has COPY ship as the
# physical limit (the export itself reads the same data as two streams, below).
ROW_COLUMNS = (
    "id",
    "comparison_id",
    "comparison__batch__name",
    "comparison__category",
    "comparison__source",
    "comparison__external_id",
    "comparison__prompt__turns",
    "comparison__response_a__text",
    "comparison__response_a__model_version",
    "comparison__response_a__sampling",
    "comparison__response_a__generated_at",
    "comparison__response_b__text",
    "comparison__response_b__model_version",
    "comparison__response_b__sampling",
    "comparison__response_b__generated_at",
    "preferred",
    "strength",
    "safety_a",
    "safety_b",
    "safety_bin",
    "annotator_id",
    "source_annotator",
    "left",
    "comment",
    "time_spent_ms",
    "created_at",
)


@overload
def _iso(value: datetime | str) -> str: ...
@overload
def _iso(value: None) -> None: ...
def _iso(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite hands back its stored text: naive UTC
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


# What the export reads, split in two streams so that a comparison's texts (prompt, both
# responses) cross the wire once, not once per label. Both are in comparison order.
LABEL_COLUMNS = (
    "comparison_id", "id", "preferred", "strength", "safety_a", "safety_b", "safety_bin",
    "annotator_id", "source_annotator", "left", "comment", "time_spent_ms", "created_at",
)  # fmt: skip
COMPARISON_COLUMNS = (
    "id", "batch__name", "category", "source", "external_id", "prompt__turns",
    "response_a__text", "response_a__model_version", "response_a__sampling", "response_a__generated_at",
    "response_b__text", "response_b__model_version", "response_b__sampling", "response_b__generated_at",
    "is_gold",
)  # fmt: skip


def _stream(query: QuerySet, chunk_size: int) -> Iterator[tuple]:
    """Rows of a ``values_list`` query through ``chunked_cursor`` (server-side on PostgreSQL),
    without the ORM's per-row converters: JSON arrives as text, SQLite times as text."""
    try:
        sql, params = query.query.get_compiler(using=query.db).as_sql()
    except EmptyResultSet:
        return
    with connections[query.db].chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(chunk_size):
            yield from rows


def label_rows(
    qs: QuerySet[Label], *, pseudonym: Callable[[int | None, str], str], chunk_size: int = 5000
) -> Iterator[LabelRow]:
    """Stream ``qs`` as ``LabelRow``s ordered by comparison, then label; never all in memory.

    Two ordered streams, merged as they go: the labels, and the comparisons they belong to
    (with the texts). JSON is decoded once per comparison, and a comparison's parts are
    shared by all its labels. ``pseudonym(annotator_id, source_annotator)`` names the annotator.
    """
    labels = qs.order_by("comparison_id", "id").values_list(*LABEL_COLUMNS)
    comparisons = iter(
        _stream(
            Comparison.objects.filter(id__in=qs.values("comparison_id"))
            .order_by("id")
            .values_list(*COMPARISON_COLUMNS),
            chunk_size,
        )
    )
    review = review_state(qs)
    flagged = bool(review.label_flags or review.annotator_flags)
    verdict: ReviewRow | None = None
    current = None
    is_gold = False
    batch = category = source = external_id = ""
    prompt: list[dict[str, str]] = []
    response_a = response_b = ResponseRow("", "", {}, None)
    for (
        comparison_id, label_id, preferred, strength, safety_a, safety_b, safety_bin,
        annotator_id, source_annotator, left, comment, time_spent_ms, created_at,
    ) in _stream(labels, chunk_size):  # fmt: skip
        if comparison_id != current:
            for row in comparisons:
                if row[0] == comparison_id:
                    break
            else:
                raise RuntimeError(f"comparison {comparison_id} vanished during the export")
            (
                current, batch, category, source, external_id, turns,
                a_text, a_model, a_sampling, a_generated, b_text, b_model, b_sampling, b_generated,
                is_gold,
            ) = row  # fmt: skip
            prompt = _json(turns)
            standing = review.verdicts.get(comparison_id)
            verdict = None
            if standing is not None:
                verdict = ReviewRow(
                    standing.decision,
                    standing.preferred,
                    standing.strength,
                    _iso(standing.created_at),
                )
            response_a = ResponseRow(a_text, a_model, _json(a_sampling) or {}, _iso(a_generated))
            response_b = ResponseRow(b_text, b_model, _json(b_sampling) or {}, _iso(b_generated))
        # Positional: this loop runs once per label, and keywords cost a third more here.
        yield LabelRow(
            label_id, comparison_id, batch, category, source, external_id, prompt,
            response_a, response_b, preferred, strength, safety_a, safety_b, safety_bin,
            pseudonym(annotator_id, source_annotator), left, comment, time_spent_ms,
            _iso(created_at), bool(is_gold), verdict,
            (
                review.label_flags.get(label_id, ())
                + review.annotator_flags.get((batch, annotator_id), ())
            ) if flagged else (),
        )  # fmt: skip


def demonstrations_selected(
    filters: SnapshotFilters, *, max_demonstration_id: int | None = None
) -> QuerySet[Demonstration]:
    """The demonstrations a snapshot with ``filters`` contains: those of its batches, made
    on its days (``max_demonstration_id`` pins a build's view). The other filters are about
    labels (category, strength, safety bin, agreement, annotators): a demonstration has
    none of these, so they leave demonstrations as they are."""
    qs = Demonstration.objects.all()
    if max_demonstration_id is not None:
        qs = qs.filter(id__lte=max_demonstration_id)
    if filters.batches:
        qs = qs.filter(batch__name__in=filters.batches)
    if filters.date_from:
        qs = qs.filter(created_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=UTC))
    if filters.date_to:
        qs = qs.filter(
            created_at__lt=datetime.combine(
                filters.date_to + timedelta(days=1), time.min, tzinfo=UTC
            )
        )
    return qs


def demonstration_rows(
    qs: QuerySet[Demonstration],
    *,
    pseudonym: Callable[[int | None, str], str],
    chunk_size: int = 5000,
) -> Iterator[DemonstrationRow]:
    """Stream ``qs`` as ``DemonstrationRow``s in id order; the author named by ``pseudonym``
    (the same name their labels get in the snapshot), None for imported ones."""
    rows = qs.order_by("id").values_list(
        "id", "batch__name", "source", "prompt__turns", "response", "written_by_id",
        "provenance", "created_at",
    )  # fmt: skip
    for demonstration_id, batch, source, turns, response, author, provenance, created in _stream(
        rows, chunk_size
    ):
        yield DemonstrationRow(
            demonstration_id,
            batch,
            source,
            _json(turns),
            response,
            None if author is None else pseudonym(author, ""),
            _json(provenance) or {},
            _iso(created),
        )


def snapshot_list() -> QuerySet[Snapshot]:
    return Snapshot.objects.select_related("created_by").order_by("-created_at", "-id")


def snapshot_get(snapshot_id: int) -> Snapshot | None:
    return Snapshot.objects.filter(pk=snapshot_id).first()


@dataclass(frozen=True)
class BatchDistribution:
    """Label counts of one batch by strength and by safety bin (for the Data page's plot)."""

    batch: str
    labels: int
    by_strength: dict[str, int] = field(default_factory=dict)
    by_safety_bin: dict[str, int] = field(default_factory=dict)


def label_distribution() -> list[BatchDistribution]:
    """Per batch (oldest first): how many labels at each strength and in each safety bin."""
    rows = (
        Label.objects.values(
            "comparison__batch__name", "comparison__batch__created_at", "strength", "safety_bin"
        )
        .annotate(n=Count("id"))
        .order_by(
            "comparison__batch__created_at", "comparison__batch__name", "strength", "safety_bin"
        )
    )
    out: dict[str, BatchDistribution] = {}
    totals: dict[str, int] = {}
    for row in rows:
        name = row["comparison__batch__name"]
        dist = out.setdefault(name, BatchDistribution(name, 0, {}, {}))
        strength = row["strength"] or UNRATED
        dist.by_strength[strength] = dist.by_strength.get(strength, 0) + row["n"]
        if row["safety_bin"]:
            dist.by_safety_bin[row["safety_bin"]] = (
                dist.by_safety_bin.get(row["safety_bin"], 0) + row["n"]
            )
        totals[name] = totals.get(name, 0) + row["n"]
    return [
        BatchDistribution(d.batch, totals[d.batch], d.by_strength, d.by_safety_bin)
        for d in out.values()
    ]
