"""Snapshots of the preference data: request, build, and the files they are made of.

A snapshot is built in one pass over its labels, streamed from the database in order, into
every format at once (``formats.SnapshotWriter``). The files go to a private folder first
and are moved to ``SNAPSHOTS_DIR/<content hash>`` when complete, so a folder named by a hash
always holds a finished, unchanging snapshot.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.domain import DEFAULT_MARGIN_TABLE, MARGINS, text_problem
from annotation.export import formats, selectors
from annotation.export.selectors import NO_BIN, UNRATED, SnapshotFilters
from annotation.models import Snapshot
from config.leases import JobKind, job_beat, job_claim, job_heartbeat

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# Snapshots of at most this many labels are built inside the request; larger ones by a worker.
INLINE_MAX_LABELS = 20_000
PROGRESS_EVERY = 5_000
MANIFEST = "manifest.json"


@cache
def code_version() -> str:
    """``git describe`` of the running code, else the installed package's version."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"pairwise {version('pairwise')}"
        except PackageNotFoundError:
            return "unknown"


class Pseudonyms:
    """Annotator ids for one snapshot: HMAC-SHA256 of the user id (or imported rater name).

    Stable within a snapshot and across its byte-identical re-creations, different between
    snapshots with different contents, and never the username. The key is derived from the
    site's SECRET_KEY, so ids cannot be reversed from the published files.
    """

    def __init__(self, salt: str):
        self._key = hmac.new(settings.SECRET_KEY.encode(), salt.encode(), hashlib.sha256).digest()
        self._cache: dict[tuple[int | None, str], str] = {}

    def __call__(self, annotator_id: int | None, source_annotator: str) -> str:
        key = (annotator_id, source_annotator)
        name = self._cache.get(key)
        if name is None:
            message = (
                f"user:{annotator_id}"
                if annotator_id is not None
                else f"imported:{source_annotator}"
            )
            name = "ann-" + hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()[:16]
            self._cache[key] = name
        return name


@dataclass
class BuildResult:
    content_hash: str
    manifest: dict[str, Any]
    directory: Path
    labels: int
    comparisons: int


@dataclass
class _Counts:
    """Label counts for the manifest, kept as one counter of (batch, category, strength, bin):
    one update per label, expanded into the per-dimension counts at the end."""

    labels: int = 0
    comparisons: int = 0
    cells: Counter = field(default_factory=Counter)
    reviewed: Counter = field(default_factory=Counter)  # review status of reviewed labels

    def add(self, row: formats.LabelRow, new_comparison: bool) -> None:
        self.labels += 1
        self.comparisons += new_comparison
        self.cells[row.batch, row.category, row.strength, row.safety_bin] += 1
        if row.review is not None:
            self.reviewed[row.review_status] += 1

    def as_dict(self) -> dict[str, Any]:
        per: dict[str, Counter] = {
            k: Counter() for k in ("batch", "category", "strength", "safety_bin", "bc")
        }
        for (batch, category, strength, bin_), n in self.cells.items():
            per["batch"][batch] += n
            per["category"][category] += n
            per["strength"][strength or UNRATED] += n
            per["safety_bin"][bin_ or NO_BIN] += n
            per["bc"][f"{batch}/{category}"] += n

        def ordered(c: Counter) -> dict[str, int]:
            return dict(sorted(c.items()))

        return {
            "labels": self.labels,
            "comparisons": self.comparisons,
            "per_batch": ordered(per["batch"]),
            "per_category": ordered(per["category"]),
            "per_strength": ordered(per["strength"]),
            "per_safety_bin": ordered(per["safety_bin"]),
            "per_batch_category": ordered(per["bc"]),
            "per_review_status": {
                formats.UNREVIEWED: self.labels - sum(self.reviewed.values()),
                **ordered(self.reviewed),
            },
        }


def snapshot_build_files(
    *,
    filters: SnapshotFilters,
    work_dir: Path,
    max_label_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    formats_: tuple[str, ...] = formats.ALL_FORMATS,
) -> BuildResult:
    """Write a snapshot's files into ``work_dir`` (which must be empty) and its manifest.

    Deterministic: same labels and filters → byte-identical data files. The content hash is
    the SHA-256 of the schema version, the canonical filters and every data file's checksum.
    """
    if max_label_id is None:
        max_label_id = selectors.labels_selected(filters).aggregate(m=Max("id"))["m"] or 0
    qs = selectors.labels_selected(filters, max_label_id=max_label_id)
    # The salt names the selection, not the build: a re-creation gets the same pseudonyms.
    salt = json.dumps([formats.SCHEMA_VERSION, filters.as_dict(), max_label_id], sort_keys=True)
    pseudonym = Pseudonyms(salt)
    work_dir.mkdir(parents=True, exist_ok=True)
    writer = formats.SnapshotWriter(work_dir, formats_)
    counts = _Counts()
    last_comparison = None
    for row in selectors.label_rows(qs, pseudonym=pseudonym):
        writer.write(row)
        counts.add(row, row.comparison_id != last_comparison)
        last_comparison = row.comparison_id
        if progress is not None and counts.labels % PROGRESS_EVERY == 0:
            progress(counts.labels)
    files = writer.close()
    # Demonstrations: their files only when the selection holds any, so a snapshot of
    # labels alone keeps its files and content hash.
    demonstrations = selectors.demonstrations_selected(filters)
    max_demonstration_id = demonstrations.aggregate(m=Max("id"))["m"] or 0
    demonstration_count = 0
    if max_demonstration_id:
        demonstration_writer = formats.DemonstrationWriter(work_dir)
        for demonstration in selectors.demonstration_rows(
            selectors.demonstrations_selected(filters, max_demonstration_id=max_demonstration_id),
            pseudonym=pseudonym,
        ):
            demonstration_writer.write(demonstration)
            demonstration_count += 1
        files = sorted([*files, *demonstration_writer.close()], key=lambda f: f.name)
    digest = hashlib.sha256(
        json.dumps([formats.SCHEMA_VERSION, filters.as_dict()], sort_keys=True).encode()
    )
    for f in files:
        digest.update(f"{f.name}:{f.sha256}\n".encode())
    content_hash = digest.hexdigest()
    manifest = {
        "name": f"pairwise-snapshot-{content_hash[:12]}",
        "content_hash": content_hash,
        "schema_version": formats.SCHEMA_VERSION,
        "code_version": code_version(),
        "filters": filters.as_dict(),
        "max_label_id": max_label_id,
        "counts": {**counts.as_dict(), "demonstrations": demonstration_count},
        "margin_table": {
            "name": str(DEFAULT_MARGIN_TABLE),
            **{str(s): m for s, m in MARGINS[DEFAULT_MARGIN_TABLE].items()},
        },
        "annotator_ids": "HMAC-SHA256 of the Pairwise user id or imported rater name; stable within this snapshot",
        "files": {f.name: {"sha256": f.sha256, "bytes": f.bytes, "rows": f.rows} for f in files},
        "empty": counts.labels == 0 and demonstration_count == 0,
    }
    if demonstration_count:
        manifest["max_demonstration_id"] = max_demonstration_id
        manifest["demonstrations"] = (
            "selected by batch and date only: the other filters are about labels; "
            "written_by as annotator ids (null: imported)"
        )
    (work_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return BuildResult(content_hash, manifest, work_dir, counts.labels, counts.comparisons)


class SnapshotFilesMissing(Exception):
    """A ready snapshot whose folder, or a file in it, was removed from ``SNAPSHOTS_DIR``."""

    def __init__(self) -> None:
        # No path: the server's folders are none of the client's business.
        super().__init__(
            "This snapshot's files are missing on the server: create a snapshot with the "
            "same filters to rebuild them."
        )


def snapshot_directory(snapshot: Snapshot) -> Path:
    return Path(settings.SNAPSHOTS_DIR) / snapshot.content_hash


def snapshot_file_names(snapshot: Snapshot) -> list[str]:
    """A ready snapshot's files, data files first, checked present on disk.

    Streamed responses (the tar archive) cannot change their status once the first byte
    is out, so they check here before answering. Raises ``SnapshotFilesMissing``.
    """
    names = sorted(snapshot.manifest["files"]) + [MANIFEST]
    directory = snapshot_directory(snapshot)
    if not all((directory / name).is_file() for name in names):
        raise SnapshotFilesMissing
    return names


def snapshot_request(
    *,
    filters: SnapshotFilters | dict[str, Any],
    name: str = "",
    created_by: User | None = None,
    inline: bool | None = None,
) -> Snapshot:
    """Record a snapshot request and build it: inline when small, by a worker when large.

    ``inline`` forces one or the other (the management command builds in its own process).

    Filters that match nothing still give a snapshot: empty files and a manifest saying so.
    """
    if problem := text_problem(name):
        raise ValidationError({"name": f"The name {problem}."})
    if isinstance(filters, dict):
        filters = SnapshotFilters.from_dict(filters)
    total = selectors.labels_selected(filters).count()
    demonstrations = selectors.demonstrations_selected(filters).count()
    snapshot = Snapshot.objects.create(
        name=name.strip()[:200],
        filters=filters.as_dict(),
        created_by=created_by,
        progress_total=total,
    )
    if inline or (inline is None and total + demonstrations <= INLINE_MAX_LABELS):
        return snapshot_build(snapshot_id=snapshot.pk)
    from annotation.export.tasks import snapshot_build_task

    transaction.on_commit(lambda: snapshot_build_task.delay(snapshot.pk))
    return snapshot


def _requeue_build(snapshot_id: int) -> None:
    from annotation.export.tasks import snapshot_build_task

    snapshot_build_task.delay(snapshot_id)


SNAPSHOT_BUILDS = JobKind(
    label="snapshot build",
    model=Snapshot,
    running=Snapshot.Status.BUILDING,
    queued=Snapshot.Status.PENDING,
    finished=(Snapshot.Status.READY,),  # a failed one is built again when asked
    requeue=_requeue_build,
)


def snapshot_build(*, snapshot_id: int) -> Snapshot:
    """Build a requested snapshot's files and mark it ready (or failed, with the reason).

    Idempotent: a ready snapshot, or one a live worker is building (``config.leases``), is
    returned as it is; a build whose worker died is started again from scratch.
    """
    snapshot = Snapshot.objects.get(pk=snapshot_id)
    if snapshot.status == Snapshot.Status.READY:
        return snapshot
    lease = job_claim(SNAPSHOT_BUILDS, snapshot.pk, progress_done=0, error="")
    if lease is None:
        return Snapshot.objects.get(pk=snapshot.pk)
    filters = SnapshotFilters.from_dict(snapshot.filters)
    root = Path(settings.SNAPSHOTS_DIR)
    # A folder per attempt: a worker that lost its lease never writes into the new one's.
    for left_behind in root.glob(f".building-{snapshot.pk}-*"):
        shutil.rmtree(left_behind, ignore_errors=True)
    work_dir = root / f".building-{snapshot.pk}-{lease}"
    held = Snapshot.objects.filter(pk=snapshot.pk, attempts=lease)

    def progress(done: int) -> None:
        job_beat(SNAPSHOT_BUILDS, snapshot.pk, lease, progress_done=done)

    try:
        with job_heartbeat(SNAPSHOT_BUILDS, snapshot.pk, lease):
            result = snapshot_build_files(filters=filters, work_dir=work_dir, progress=progress)
        final = root / result.content_hash
        try:
            work_dir.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            if all((final / name).is_file() for name in [*result.manifest["files"], MANIFEST]):
                # Same content already built (maybe just now, by another build): its files
                # are byte-identical to ours.
                shutil.rmtree(work_dir)
            else:  # a file of it was removed from the server: ours replace it
                shutil.rmtree(final)
                work_dir.rename(final)
    except Exception as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        failed = held.update(
            status=Snapshot.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        if not failed:  # taken over by another worker (LeaseLost): its build counts
            return Snapshot.objects.get(pk=snapshot.pk)
        logger.exception("snapshot %s failed", snapshot.pk)
        raise
    held.update(
        status=Snapshot.Status.READY,
        content_hash=result.content_hash,
        manifest=result.manifest,
        label_count=result.labels,
        comparison_count=result.comparisons,
        progress_done=result.labels,
        progress_total=result.labels,
        finished_at=timezone.now(),
    )
    snapshot.refresh_from_db()
    logger.info(
        "snapshot %s ready: %s (%d labels)", snapshot.pk, result.content_hash[:12], result.labels
    )
    return snapshot


def snapshot_file_path(*, snapshot: Snapshot, name: str) -> Path:
    """The path of one of a ready snapshot's files; only names listed in its manifest.

    Raises ``ValidationError`` for a snapshot not ready or a name it does not list,
    ``SnapshotFilesMissing`` when the file was removed from the server.
    """
    if snapshot.status != Snapshot.Status.READY:
        raise ValidationError({"snapshot": "This snapshot is not ready yet."})
    if name != MANIFEST and name not in snapshot.manifest.get("files", {}):
        raise ValidationError({"file": f"This snapshot has no file {name!r}."})
    path = snapshot_directory(snapshot) / name
    if not path.is_file():
        raise SnapshotFilesMissing
    return path
