"""Leases and heartbeats for the jobs workers run, so a killed worker's job resumes in minutes.

Long jobs (training runs, score jobs, iteration stages, snapshot builds) are rows with a
status, an ``attempts`` counter and a ``heartbeat_at`` time. Celery's ``acks_late`` alone
does not bring a killed worker's job back soon: Redis redelivers the message only after
its visibility timeout, and the filesystem broker of the embedded setup never does. So the
rows say themselves whether anyone is still working on them:

- **claim** (``job_claim``): a worker takes a job with one compare-and-set UPDATE on
  (status, attempts); the new ``attempts`` is its lease. A job that is running with a fresh
  heartbeat is left alone, so a duplicate or late-redelivered message never runs a job
  twice at once, and one whose heartbeat is stale is taken over (its worker died).
- **heartbeat** (``job_heartbeat``): while the job runs, a thread stamps ``heartbeat_at``
  every ``JOB_STALE_SECONDS / 6`` (progress callbacks stamp it too, with ``job_beat``).
  Only the lease holder can: a worker whose job was taken over sees ``lost`` and stops.
- **sweep** (``requeue_stale``): a running job whose heartbeat is older than
  ``JOB_STALE_SECONDS`` is put back to its queued status and its task sent again.
  ``config.celery.jobs_requeue_stale`` sweeps every kind; Celery beat runs it every
  ``JOB_SWEEP_SECONDS``, and every worker runs it when it starts and once more a stale
  period later, so the embedded setup, which has no beat, recovers when its worker is
  restarted.

This module imports no app: each app declares its own ``JobKind`` beside the code that runs
the job.

A job's own code stays idempotent on top of this: a training run resumes from its last
checkpoint, a stage or a snapshot starts again into a private folder published by rename.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, connections, models, transaction
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took this job over (its heartbeat looked stale); stop without writing."""


@dataclass(frozen=True)
class JobKind:
    """How the rows of one model are leased: which statuses mean what, and how to send the
    job's task again. The model needs ``status``, ``attempts`` and ``heartbeat_at``."""

    label: str
    model: type[models.Model]
    running: str  # a worker holds it
    queued: str  # waiting for a worker; a stale job is put back here
    finished: tuple[str, ...]  # no claim takes these
    requeue: Callable[[int], None]  # sends the job's task for this primary key


def heartbeat_seconds() -> float:
    """How often a running job stamps its heartbeat: a sixth of the stale threshold, so a
    few missed beats (a slow database, a long pause) never make a live job look dead."""
    return max(1.0, settings.JOB_STALE_SECONDS / 6)


def stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)


def _stale() -> Q:
    # NULL: running since before heartbeats existed, or never beaten; nobody vouches for it.
    return Q(heartbeat_at__lt=stale_before()) | Q(heartbeat_at__isnull=True)


def job_claim(kind: JobKind, pk: int, **fields: Any) -> int | None:
    """Take the job for this worker; returns the lease (the new ``attempts``), or None when
    it is finished, gone, or running elsewhere with a fresh heartbeat. ``fields`` are set in
    the same UPDATE (e.g. ``started_at``)."""
    row = (
        kind.model._default_manager.filter(pk=pk)
        .values("status", "attempts", "heartbeat_at")
        .first()
    )
    if row is None or row["status"] in kind.finished:
        return None
    beat = row["heartbeat_at"]
    if row["status"] == kind.running and beat is not None and beat >= stale_before():
        return None
    lease = row["attempts"] + 1
    taken = kind.model._default_manager.filter(
        pk=pk, status=row["status"], attempts=row["attempts"]
    ).update(status=kind.running, attempts=lease, heartbeat_at=timezone.now(), **fields)
    if not taken:
        return None  # another worker claimed it between our read and our write
    if row["status"] == kind.running:
        logger.warning("%s %s: taking over from a worker that stopped beating", kind.label, pk)
    return lease


def job_beat(kind: JobKind, pk: int, lease: int, **fields: Any) -> None:
    """Stamp the heartbeat (and ``fields``, e.g. progress) from the job's own thread; raises
    ``LeaseLost`` if another worker has taken the job."""
    updated = kind.model._default_manager.filter(pk=pk, attempts=lease).update(
        heartbeat_at=timezone.now(), **fields
    )
    if not updated:
        raise LeaseLost(f"{kind.label} {pk} was taken over by another worker")


class _Heartbeat(threading.Thread):
    def __init__(self, kind: JobKind, pk: int, lease: int):
        super().__init__(name=f"heartbeat-{kind.label}-{pk}", daemon=True)
        self.kind, self.pk, self.lease = kind, pk, lease
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(heartbeat_seconds()):
                try:
                    job_beat(self.kind, self.pk, self.lease)
                except LeaseLost:
                    self.lost = True
                    logger.warning("%s %s: another worker took it over", self.kind.label, self.pk)
                    return
                except DatabaseError:
                    logger.warning("%s %s: heartbeat failed", self.kind.label, self.pk)
        finally:
            connections.close_all()  # this thread's own connection

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


class Lease:
    """A held job: ``lost`` turns true when another worker took it over."""

    def __init__(self, beat: _Heartbeat | None):
        self._beat = beat

    @property
    def lost(self) -> bool:
        return self._beat is not None and self._beat.lost


@contextmanager
def job_heartbeat(kind: JobKind, pk: int, lease: int) -> Iterator[Lease]:
    """Keep the job's heartbeat fresh while the block runs.

    Inside a transaction (tests, or a caller's ``atomic``) no thread is started: its own
    connection could not see the uncommitted row, and the caller's progress writes are the
    only beats that count there."""
    beat = None if connection.in_atomic_block else _Heartbeat(kind, pk, lease)
    if beat is not None:
        beat.start()
    try:
        yield Lease(beat)
    finally:
        if beat is not None:
            beat.stop()


def requeue_stale(kind: JobKind) -> list[int]:
    """Put this kind's running jobs whose heartbeat is stale back to queued and send their
    tasks again. Each row is switched with a compare-and-set, so two sweeps at once send a
    job once."""
    requeued = []
    rows = kind.model._default_manager.filter(_stale(), status=kind.running).values_list(
        "pk", "attempts"
    )
    for pk, attempts in rows:
        switched = kind.model._default_manager.filter(
            _stale(), pk=pk, status=kind.running, attempts=attempts
        ).update(status=kind.queued)
        if switched:
            logger.warning(
                "%s %s: no heartbeat for %s s; queued again",
                kind.label,
                pk,
                settings.JOB_STALE_SECONDS,
            )
            transaction.on_commit(partial(kind.requeue, pk))
            requeued.append(pk)
    return requeued
