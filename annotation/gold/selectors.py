"""Reads of gold comparisons, annotators' gold accuracy and pause state.

What the Quality page and the admin read: ``annotator_gold_list`` (per annotator and
batch: gold checks labelled, right, accuracy, paused and why). What the annotator reads:
``annotator_pauses_for`` (only the batches they are paused on and the reason; never
which of their labels were gold, nor the answers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.db.models import Count, QuerySet

from annotation.models import AnnotatorBatchCount, AnnotatorPauseEvent, Batch, GoldComparison

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@dataclass(frozen=True)
class PauseReason:
    """The latest pause or resume of an annotator on a batch: why, by whom (None: the
    gold rule), when."""

    paused: bool
    reason: str
    by: str | None
    at: datetime


@dataclass(frozen=True)
class AnnotatorGold:
    """An annotator's gold record on one batch."""

    annotator_id: int
    username: str
    batch_id: int
    batch_name: str
    gold_labels: int
    gold_correct: int
    paused: bool
    last_event: PauseReason | None

    @property
    def accuracy(self) -> float | None:
        """Share of gold checks answered as expected; None before the first."""
        return self.gold_correct / self.gold_labels if self.gold_labels else None


def _last_events(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], PauseReason]:
    wanted = set(pairs)
    if not wanted:
        return {}
    annotators = {a for a, _ in wanted}
    batches = {b for _, b in wanted}
    found: dict[tuple[int, int], PauseReason] = {}
    events = (
        AnnotatorPauseEvent.objects.filter(annotator_id__in=annotators, batch_id__in=batches)
        .select_related("by")
        .order_by("id")
    )
    for e in events:
        key = (e.annotator_id, e.batch_id)
        if key in wanted:
            found[key] = PauseReason(
                e.paused, e.reason, e.by.username if e.by else None, e.created_at
            )
    return found


def annotator_gold_list(
    *, batch_ids: Iterable[int] | None = None, annotator_ids: Iterable[int] | None = None
) -> list[AnnotatorGold]:
    """Per annotator and batch (those they worked on, or were paused on): gold checks
    labelled and right, whether paused, and the latest pause event. Ordered by batch,
    then username. For admins (the Quality page), never for annotators."""
    rows = AnnotatorBatchCount.objects.select_related("annotator", "batch").order_by(
        "batch_id", "annotator__username"
    )
    if batch_ids is not None:
        rows = rows.filter(batch_id__in=list(batch_ids))
    if annotator_ids is not None:
        rows = rows.filter(annotator_id__in=list(annotator_ids))
    found = list(rows)
    events = _last_events((r.annotator_id, r.batch_id) for r in found)
    return [
        AnnotatorGold(
            annotator_id=r.annotator_id,
            username=r.annotator.username,
            batch_id=r.batch_id,
            batch_name=r.batch.name,
            gold_labels=r.gold_labels,
            gold_correct=r.gold_correct,
            paused=r.paused,
            last_event=events.get((r.annotator_id, r.batch_id)),
        )
        for r in found
    ]


@dataclass(frozen=True)
class PauseNotice:
    """What a paused annotator is told: the batch and why (no gold answers, no items)."""

    batch_id: int
    batch_name: str
    reason: str


def annotator_pauses_for(annotator: User) -> list[PauseNotice]:
    """The open batches the annotator is paused on, with the reason they are told."""
    paused = list(
        AnnotatorBatchCount.objects.filter(
            annotator=annotator, paused=True, batch__status=Batch.Status.OPEN
        )
        .select_related("batch")
        .order_by("batch_id")
    )
    events = _last_events((annotator.pk, p.batch_id) for p in paused)
    return [
        PauseNotice(
            p.batch_id,
            p.batch.name,
            events[(annotator.pk, p.batch_id)].reason
            if (annotator.pk, p.batch_id) in events
            else "Paused by an admin.",
        )
        for p in paused
    ]


def pause_event_list(*, batch: Batch) -> QuerySet[AnnotatorPauseEvent]:
    """A batch's pauses and resumes, newest first: who, by whom, why."""
    return (
        AnnotatorPauseEvent.objects.filter(batch=batch)
        .select_related("annotator", "by")
        .order_by("-id")
    )


def gold_list() -> QuerySet[GoldComparison]:
    """Gold comparisons with their source comparison and batch, and how many checks of
    them batches hold and how many labels those got (``n_checks``, ``n_labels``)."""
    return (
        GoldComparison.objects.select_related("comparison__batch", "created_by")
        .annotate(
            n_checks=Count("checks", distinct=True),
            n_labels=Count("checks__labels", distinct=True),
        )
        .order_by("-id")
    )
