"""Writes to preference data. Every state change is one atomic service call.

Views, API endpoints, admin actions, commands and tasks call these; none of them writes
models directly. The annotator queue (assignments and labels) has its own home,
``annotation.queue``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from annotation import importers, selectors
from annotation.domain import Category, Role, Turn, text_problem
from annotation.gold.services import batch_gold_sync
from annotation.models import (
    Assignment,
    Batch,
    Comparison,
    Demonstration,
    Guideline,
    Label,
    Prompt,
    Response,
    ReviewFlag,
    ReviewVerdict,
)
from annotation.permissions import ROLE_PERMISSIONS

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


# --- roles -----------------------------------------------------------------------------


def roles_ensure() -> None:
    """Create the annotator / researcher / admin groups with their permissions (idempotent)."""
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            found = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if found is not None:
                wanted.append(found)
        group.permissions.add(*wanted)


def user_set_role(*, user: User, role: str) -> None:
    if role not in ROLE_PERMISSIONS:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; choose one of {sorted(ROLE_PERMISSIONS)}."}
        )
    roles_ensure()
    user.groups.add(Group.objects.get(name=role))
    if role == "admin":
        user.is_staff = True
        user.save(update_fields=["is_staff"])


# --- batches ---------------------------------------------------------------------------

ALLOWED_TRANSITIONS = {
    Batch.Status.DRAFT: {Batch.Status.OPEN},
    Batch.Status.OPEN: {Batch.Status.CLOSED},
    Batch.Status.CLOSED: {Batch.Status.OPEN, Batch.Status.FROZEN},
    Batch.Status.FROZEN: set(),
}


def batch_create(
    *,
    name: str,
    description: str = "",
    iteration: int = 0,
    labels_per_comparison: int = 1,
    purpose: str = Batch.Purpose.TRAINING,
    created_by: User | None = None,
) -> Batch:
    """A draft batch. ``purpose="evaluation"`` marks a blind evaluation batch, which no
    model ever trains on."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A batch needs a name."})
    if Batch.objects.filter(name=name).exists():
        raise ValidationError({"name": f"A batch named {name!r} already exists."})
    if labels_per_comparison < 1:
        raise ValidationError({"labels_per_comparison": "Must be at least 1."})
    return Batch.objects.create(
        name=name,
        description=description,
        iteration=iteration,
        labels_per_comparison=labels_per_comparison,
        purpose=Batch.Purpose(purpose),
        created_by=created_by,
    )


def batch_content_hash(batch: Batch) -> str:
    """SHA-256 over the batch's comparisons, labels, their review and its demonstrations
    in a canonical order.

    Streams rows; the same data gives the same hash on SQLite and PostgreSQL.
    """
    digest = hashlib.sha256()
    comparisons = (
        Comparison.objects.filter(batch=batch)
        .order_by("id")
        .values_list("id", "content_hash", "category")
    )
    for comparison in comparisons.iterator(chunk_size=2000):
        digest.update(json.dumps(["c", *comparison]).encode())
    # Which comparisons are gold checks (their labels never train). A batch without gold
    # checks hashes as it did before they existed.
    checks = Comparison.objects.filter(batch=batch, is_gold=True).order_by("id")
    for check in checks.values_list("id", "gold_id").iterator(chunk_size=2000):
        digest.update(json.dumps(["g", *check]).encode())
    labels = (
        Label.objects.filter(comparison__batch=batch)
        .order_by("id")
        .values_list(
            "id",
            "comparison_id",
            "annotator_id",
            "source_annotator",
            "preferred",
            "strength",
            "safety_a",
            "safety_b",
            "safety_bin",
            "comment",
            "left",
            "time_spent_ms",
        )
    )
    for label in labels.iterator(chunk_size=2000):
        digest.update(json.dumps(["l", *label]).encode())
    # The review (annotation.review), which exports carry: the verdicts in the order they
    # were given, and the flags by what they are about (ids change when checks run again).
    # A batch never reviewed hashes as it did before reviews existed.
    verdicts = (
        ReviewVerdict.objects.filter(comparison__batch=batch)
        .order_by("id")
        .values_list(
            "id",
            "comparison_id",
            "reviewer_id",
            "decision",
            "accepted_label_id",
            "preferred",
            "strength",
            "safety_a",
            "safety_b",
            "safety_bin",
            "reason",
        )
    )
    for verdict in verdicts.iterator(chunk_size=2000):
        digest.update(json.dumps(["v", *verdict]).encode())
    # Two queries: SQLite and PostgreSQL sort NULLs differently.
    flags = ReviewFlag.objects.filter(batch=batch)
    for flag in (
        flags.filter(label__isnull=False)
        .order_by("label_id", "reason")
        .values_list("label_id", "reason")
        .iterator(chunk_size=2000)
    ):
        digest.update(json.dumps(["f", *flag]).encode())
    for flag in (
        flags.filter(label__isnull=True)
        .order_by("annotator_id", "reason")
        .values_list("annotator_id", "reason")
        .iterator(chunk_size=2000)
    ):
        digest.update(json.dumps(["a", *flag]).encode())
    # Demonstrations (what an SFT stage trains on): which dialogue and response, by whom.
    # A batch without demonstrations hashes as it did before they existed.
    demonstrations = (
        Demonstration.objects.filter(batch=batch)
        .order_by("id")
        .values_list("id", "content_hash", "written_by_id")
    )
    for demonstration in demonstrations.iterator(chunk_size=2000):
        digest.update(json.dumps(["d", *demonstration]).encode())
    return digest.hexdigest()


@transaction.atomic
def batch_transition(*, batch: Batch, to: str, by: User | None = None) -> Batch:
    """Move a batch along draft → open → closed → frozen (closed may reopen).

    Freezing records the content hash; a frozen batch never changes again.
    """
    batch = Batch.objects.select_for_update().get(pk=batch.pk)
    to = Batch.Status(to)
    current = Batch.Status(batch.status)
    if to not in ALLOWED_TRANSITIONS[current]:
        raise ValidationError(
            {
                "status": f"Batch {batch.name!r} is {current.label.lower()}; it cannot become {to.label.lower()}."
            }
        )
    now = timezone.now()
    if to is Batch.Status.OPEN:
        if (
            not batch.comparisons.filter(is_gold=False).exists()
            and not batch.demonstrations.exists()
        ):
            raise ValidationError(
                {
                    "status": f"Batch {batch.name!r} has no comparisons to open "
                    "(and no demonstrations)."
                }
            )
        batch.opened_at = batch.opened_at or now
    elif to is Batch.Status.CLOSED:
        batch.closed_at = now
        # Work handed out but not done goes nowhere: release it.
        stale = Assignment.objects.filter(
            comparison__batch=batch, status=Assignment.Status.ASSIGNED
        )
        for comparison_id in stale.values_list("comparison_id", flat=True):
            Comparison.objects.filter(pk=comparison_id).update(claims=F("claims") - 1)
        stale.delete()
        # The review's rule checks read the finished batch (annotation.review.rules).
        from annotation.tasks import review_checks_run

        transaction.on_commit(partial(review_checks_run.delay, batch.pk))
    elif to is Batch.Status.FROZEN:
        if (
            not Label.objects.filter(comparison__batch=batch).exists()
            and not batch.demonstrations.exists()
        ):
            raise ValidationError(
                {
                    "status": f"Batch {batch.name!r} has no labels (and no "
                    "demonstrations); there is nothing to freeze."
                }
            )
        batch.frozen_at = now
        batch.freeze_hash = batch_content_hash(batch)
    batch.status = to
    batch.save()
    if to is Batch.Status.OPEN:
        batch_gold_sync(batch=batch)  # gold marked since its settings changed
    logger.info("batch %s → %s by %s", batch.name, to, by)
    return batch


# --- prompts, responses, comparisons ----------------------------------------------------


def prompt_get_or_create(
    *,
    turns: tuple[Turn, ...] | list[Turn],
    source: str = "",
    created_by: User | None = None,
) -> Prompt:
    content_hash = importers.turns_hash(turns)
    prompt, _ = Prompt.objects.get_or_create(
        content_hash=content_hash,
        defaults={
            "turns": [t.as_dict() for t in turns],
            "source": source,
            "created_by": created_by,
        },
    )
    return prompt


def _require_editable(batch: Batch) -> None:
    if batch.status not in (Batch.Status.DRAFT, Batch.Status.OPEN):
        raise ValidationError(
            {
                "batch": f"Batch {batch.name!r} is {batch.status}: comparisons can no longer be added."
            }
        )


@transaction.atomic
def comparison_create(
    *,
    batch: Batch,
    turns: tuple[Turn, ...] | list[Turn],
    response_a: importers.ResponseIn,
    response_b: importers.ResponseIn,
    category: Category | str,
    source: str = "",
    external_id: str = "",
    metadata: dict | None = None,
    created_by: User | None = None,
) -> Comparison:
    _require_editable(batch)
    category = Category(category)
    prompt = prompt_get_or_create(turns=turns, source=source, created_by=created_by)
    responses = [
        Response.objects.create(
            prompt=prompt,
            text=r.text,
            model_version=r.model_version,
            sampling=r.sampling,
            generated_at=r.generated_at,
        )
        for r in (response_a, response_b)
    ]
    content_hash = importers.comparison_hash(turns, response_a.text, response_b.text, category)
    try:
        with transaction.atomic():
            return Comparison.objects.create(
                batch=batch,
                prompt=prompt,
                response_a=responses[0],
                response_b=responses[1],
                category=category,
                source=source,
                external_id=external_id,
                content_hash=content_hash,
                metadata=metadata or {},
            )
    except IntegrityError:
        raise ValidationError(
            {"comparison": f"Batch {batch.name!r} already has this comparison."}
        ) from None


@transaction.atomic
def demonstration_create(
    *,
    batch: Batch,
    turns: tuple[Turn, ...] | list[Turn],
    response: str,
    source: str = "",
    written_by: User | None = None,
    provenance: dict | None = None,
) -> Demonstration:
    """The ideal response to ``turns`` (which end with the user's turn), in a draft or open
    batch. ``written_by`` is the annotator who wrote it (None: imported). The same dialogue
    and response twice in a batch is refused (``ValidationError``)."""
    _require_editable(batch)
    if not turns or turns[-1].role != Role.USER:
        raise ValidationError({"turns": "A demonstration answers a dialogue ending with the user."})
    if not response.strip():
        raise ValidationError({"response": "Write the response first."})
    for where, text in [("response", response), *(("turns", t.content) for t in turns)]:
        if (problem := text_problem(text)) is not None:
            raise ValidationError({where: f"The text {problem}."})
    prompt = prompt_get_or_create(turns=turns, source=source, created_by=written_by)
    try:
        with transaction.atomic():
            return Demonstration.objects.create(
                batch=batch,
                prompt=prompt,
                response=response,
                source=source[: Demonstration._meta.get_field("source").max_length],
                written_by=written_by,
                provenance=provenance or {},
                content_hash=importers.demonstration_hash(turns, response),
            )
    except IntegrityError:
        raise ValidationError(
            {"response": f"Batch {batch.name!r} already has this demonstration."}
        ) from None


@dataclass
class ImportReport:
    """What an import did. ``skipped_invalid`` is non-empty only for an explicit partial import."""

    filename: str
    lines_read: int
    created: int = 0
    labels_created: int = 0
    duplicates_existing: int = 0
    skipped_invalid: list[importers.ImportProblem] = field(default_factory=list)
    more_skipped_invalid: int = 0  # beyond PAIRWISE_IMPORT_MAX_PROBLEMS: counted, not listed
    demonstrations_created: int = 0
    demonstrations_existing: int = 0  # already in the batch, not duplicated

    def summary(self) -> str:
        what = [f"{self.created} comparison(s)"] if self.created or not self._demonstrations else []
        if self._demonstrations:
            what.append(f"{self.demonstrations_created} demonstration(s)")
        parts = [f"{' and '.join(what)} imported from {self.filename} ({self.lines_read} lines)"]
        if self.labels_created:
            parts.append(f"{self.labels_created} label(s)")
        if self.duplicates_existing:
            parts.append(f"{self.duplicates_existing} already in the batch, not duplicated")
        if self.demonstrations_existing:
            parts.append(
                f"{self.demonstrations_existing} demonstration(s) already in the batch, "
                "not duplicated"
            )
        if skipped := len(self.skipped_invalid) + self.more_skipped_invalid:
            parts.append(f"{skipped} invalid row(s) skipped")
        return "; ".join(parts) + "."

    @property
    def _demonstrations(self) -> bool:
        return bool(self.demonstrations_created or self.demonstrations_existing)


def comparisons_import(
    *,
    batch: Batch,
    stream: IO[bytes],
    fmt: str,
    filename: str = "upload",
    category: Category | str | None = None,
    with_labels: bool = True,
    skip_invalid: bool = False,
    source: str = "",
    created_by: User | None = None,
    max_bytes: int | None = None,
    kind: str = "auto",
) -> ImportReport:
    """Import a JSONL file of comparisons and/or demonstrations into ``batch``: all of it
    or nothing.

    ``kind`` (``importers.KINDS``) says what the file holds: ``comparisons``,
    ``demonstrations`` (an HH file's chosen transcripts, or demonstration rows), or
    ``auto``: each line by its keys (``importers.is_demonstration_row``).

    The whole file is parsed and validated before anything is written; problems are
    listed up to ``PAIRWISE_IMPORT_MAX_PROBLEMS`` and counted beyond (an all-or-nothing
    import stops checking there). With ``skip_invalid`` the invalid rows are left out and
    listed in the report instead (an explicit partial import). Rows already in the batch
    are not duplicated. ``max_bytes`` (the web's ``PAIRWISE_IMPORT_MAX_BYTES``; None, the
    command line: no limit) caps the file and its data once decompressed. Raises
    ``ImportFileError`` (``ImportTooLargeError`` past ``max_bytes``) and nothing is written.
    """
    _require_editable(batch)
    if (problem := text_problem(filename)) is not None:
        raise ValidationError({"file": f"The file name {problem}."})
    try:
        parsed = importers.parse_file(
            stream,
            fmt=fmt,
            filename=filename,
            category=category,
            with_labels=with_labels,
            source=source,
            max_bytes=max_bytes,
            max_problems=settings.PAIRWISE_IMPORT_MAX_PROBLEMS,
            stop_at_max_problems=not skip_invalid,
            kind=kind,
        )
    except importers.ImportFileError:
        raise
    except ValueError as exc:
        raise ValidationError({"format": str(exc)}) from None
    if parsed.problems and (not skip_invalid or not (parsed.rows or parsed.demonstrations)):
        raise importers.ImportFileError(
            filename,
            parsed.problems,
            more_problems=parsed.more_problems,
            lines_unchecked=parsed.lines_unchecked,
        )
    report = ImportReport(
        filename=filename,
        lines_read=parsed.lines_read,
        skipped_invalid=parsed.problems,
        more_skipped_invalid=parsed.more_problems,
    )
    # Provenance, cut to its column: a long file name is no reason to refuse a file.
    source = (source or ("anthropic-hh" if fmt == "hh" else filename))[
        : Comparison._meta.get_field("source").max_length
    ]
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch.pk)
        _require_editable(batch)
        existing = set(
            Comparison.objects.filter(
                batch=batch, content_hash__in=[r.content_hash for r in parsed.rows]
            ).values_list("content_hash", flat=True)
        )
        for row in parsed.rows:
            if row.content_hash in existing:
                report.duplicates_existing += 1
                continue
            comparison = comparison_create(
                batch=batch,
                turns=row.turns,
                response_a=row.response_a,
                response_b=row.response_b,
                category=row.category,
                source=source,
                external_id=row.external_id,
                metadata=row.metadata,
                created_by=created_by,
            )
            for label in row.labels:
                Label.objects.create(
                    comparison=comparison,
                    source_annotator=label.source_annotator,
                    preferred=label.preferred,
                    strength=label.strength,
                    comment=label.comment,
                )
                report.labels_created += 1
            report.created += 1
        known = set(
            Demonstration.objects.filter(
                batch=batch, content_hash__in=[d.content_hash for d in parsed.demonstrations]
            ).values_list("content_hash", flat=True)
        )
        for demonstration in parsed.demonstrations:
            if demonstration.content_hash in known:
                report.demonstrations_existing += 1
                continue
            provenance: dict = {"importer": fmt, "file": filename, "line": demonstration.line}
            if demonstration.external_id:
                provenance["id"] = demonstration.external_id
            if demonstration.given:
                provenance["given"] = demonstration.given
            demonstration_create(
                batch=batch,
                turns=demonstration.turns,
                response=demonstration.response,
                source=source,
                provenance=provenance,
            )
            report.demonstrations_created += 1
    logger.info("import into %s: %s", batch.name, report.summary())
    return report


# --- guidelines ------------------------------------------------------------------------


@transaction.atomic
def guideline_publish(*, category: Category | str, title: str, body: str) -> Guideline:
    """Publish a new version of a category's guidelines; older versions stay for the record."""
    category = Category(category)
    last = Guideline.objects.filter(category=category).order_by("-version").first()
    Guideline.objects.filter(category=category).update(is_active=False)
    guideline = Guideline.objects.create(
        category=category, title=title, body=body, version=(last.version + 1 if last else 1)
    )
    # Now for this process, and again at commit so no reader re-caches the old version.
    selectors.guideline_cache_clear(category)
    transaction.on_commit(lambda: selectors.guideline_cache_clear(category))
    return guideline
