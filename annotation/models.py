"""Preference data: prompts (dialogue so far), responses with provenance, comparisons,
labels, demonstrations, batches, guidelines, and the annotator queue's assignments.

Writes go through ``annotation.services``; reads through ``annotation.selectors``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.domain import Category, Choice, SafetyBin, SafetyTag, Strength


def _choices(enum_cls, labels=None):
    return [
        (m.value, (labels or {}).get(m, m.value.replace("_", " ").capitalize())) for m in enum_cls
    ]


from annotation.domain import STRENGTH_LABELS  # noqa: E402

CATEGORY_CHOICES = _choices(Category)
CHOICE_CHOICES = _choices(Choice)
STRENGTH_CHOICES = _choices(Strength, STRENGTH_LABELS)
SAFETY_TAG_CHOICES = _choices(SafetyTag)
SAFETY_BIN_CHOICES = _choices(SafetyBin)


class Batch(models.Model):
    """A week's worth of comparisons: draft → open → closed → frozen.

    Frozen batches are immutable training data; ``freeze_hash`` is the SHA-256 of their
    canonical content (comparisons and labels), so a model trained on them can name them.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"
        FROZEN = "frozen", "Frozen"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    iteration = models.PositiveIntegerField(
        default=0, help_text="The weekly iteration this batch belongs to (RLHF-V{N} sampled it)."
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True
    )

    class Purpose(models.TextChoices):
        TRAINING = "training", "Training"
        # A blind human evaluation of two model versions: its labels measure a policy and
        # never train one (no reward model, no policy method, no base-model text).
        EVALUATION = "evaluation", "Evaluation"

    class QueueOrder(models.TextChoices):
        # Today's order: the fewest claims first, then the order comparisons arrived in.
        ARRIVAL = "arrival", "Arrival order"
        # By reward-model uncertainty (``Comparison.priority``, computed by a worker):
        MARGIN = "margin", "Smallest predicted reward margin first"
        ENSEMBLE = "ensemble", "Largest disagreement among reward models first"

    labels_per_comparison = models.PositiveSmallIntegerField(
        default=1, help_text="How many annotators label each comparison."
    )
    labels_per_comparison_max = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Adaptive overlap: while a comparison's labels disagree (different sides, or"
        " one says Negligibly better / Unsure), ask for one more label, up to this many."
        " Blank: always stop at the base overlap.",
    )
    queue_order = models.CharField(
        max_length=10,
        choices=QueueOrder.choices,
        default=QueueOrder.ARRIVAL,
        help_text="Which comparisons annotators get first.",
    )
    priorities_computed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker last ordered the queue by uncertainty."
    )
    priorities_source = models.CharField(
        max_length=500, blank=True, help_text="The reward models that ordered it, and how."
    )
    gold_rate = models.FloatField(
        default=0.0,
        help_text="Share of an annotator's tasks that are gold checks (0 to 0.5); 0: none.",
    )
    gold_min_accuracy = models.FloatField(
        default=0.7,
        help_text="An annotator whose gold accuracy falls below this is paused on the batch.",
    )
    gold_min_items = models.PositiveSmallIntegerField(
        default=10, help_text="Gold checks an annotator answers before the accuracy rule applies."
    )
    purpose = models.CharField(
        max_length=10,
        choices=Purpose.choices,
        default=Purpose.TRAINING,
        help_text="Evaluation batches are never used to train a model.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    frozen_at = models.DateTimeField(null=True, blank=True)
    freeze_hash = models.CharField(max_length=64, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        permissions = [
            ("manage_batches", "Can open, close, freeze batches and import comparisons"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_frozen(self) -> bool:
        return self.status == self.Status.FROZEN

    @property
    def is_evaluation(self) -> bool:
        return self.purpose == self.Purpose.EVALUATION


class Guideline(models.Model):
    """Written instructions for one category; the newest active version is shown."""

    category = models.CharField(max_length=20, choices=CATEGORY_CHOICES)
    title = models.CharField(max_length=200)
    body = models.TextField(
        help_text="Plain text; blank lines separate paragraphs, '- ' starts a bullet."
    )
    version = models.PositiveIntegerField(default=1)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["category", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["category", "version"], name="guideline_category_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.category} v{self.version}: {self.title}"


class Prompt(models.Model):
    """The dialogue so far: a list of turns ``[{"role": ..., "content": ...}, ...]``.

    The last turn is the user's; the two responses of a comparison answer it. Identical
    dialogues share one row (``content_hash``), so a live multi-turn conversation and its
    imported twin are the same prompt.
    """

    turns = models.JSONField()
    content_hash = models.CharField(max_length=64, unique=True)
    source = models.CharField(
        max_length=100,
        blank=True,
        help_text="Where it came from: an import, an annotator, a prompt set.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        last = self.turns[-1]["content"] if self.turns else ""
        return (last[:70] + "…") if len(last) > 70 else last


class Response(models.Model):
    """One candidate answer to a prompt, with its provenance."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    text = models.TextField()
    model_version = models.CharField(
        max_length=200, blank=True, help_text="e.g. RLHF-V2, SFT, human, anthropic-hh"
    )
    sampling = models.JSONField(
        default=dict, blank=True, help_text="temperature, top_p, max_new_tokens, seed…"
    )
    generated_at = models.DateTimeField(null=True, blank=True)
    generation_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.model_version or 'unknown'}: {self.text[:60]}"


class Comparison(models.Model):
    """Two responses to one prompt, to be judged under one category, inside a batch."""

    # No index of its own: comparison_open_slots and comparison_unique_in_batch both lead
    # with batch_id, and every claim writes an entry into each index of this table.
    batch = models.ForeignKey(
        Batch, on_delete=models.PROTECT, related_name="comparisons", db_index=False
    )
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="comparisons")
    response_a = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    response_b = models.ForeignKey(Response, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=20, choices=CATEGORY_CHOICES)  # 2 values: no index
    source = models.CharField(max_length=100, blank=True, help_text="Import name or generator.")
    external_id = models.CharField(
        max_length=200, blank=True, help_text="The row's id or line in its source."
    )
    content_hash = models.CharField(
        max_length=64,
        help_text="SHA-256 of (prompt, response A, response B, category): finds duplicates.",
    )
    metadata = models.JSONField(
        default=dict, blank=True, help_text="Source-specific fields kept verbatim."
    )
    # Live claims on this comparison: labelled plus currently assigned, less extra_labels
    # (so a slot adaptive overlap adds is free under the claim's index bound). Kept under
    # the row lock so concurrent annotators never over-assign (queue.assignments.assignment_next).
    claims = models.PositiveSmallIntegerField(default=0)
    # Adaptive overlap (Batch.labels_per_comparison_max): labels wanted beyond the batch's
    # base overlap because this comparison's labels disagreed. Written with the label
    # (queue.statements.comparison_extend_sql).
    extra_labels = models.PositiveSmallIntegerField(default=0)
    # Queue order by uncertainty: higher first (0 = not scored). A worker writes it for
    # batches ordered by reward-model uncertainty; it stays 0 in arrival-ordered batches.
    priority = models.FloatField(default=0.0)
    # A gold check: a copy, inside this batch, of a gold comparison (``gold``), mixed into
    # annotators' work at the batch's ``gold_rate``; every annotator may get it once.
    is_gold = models.BooleanField(default=False)
    gold = models.ForeignKey(
        "GoldComparison",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="checks",
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "content_hash"], name="comparison_unique_in_batch"
            ),
            models.UniqueConstraint(
                fields=["gold", "batch"],
                condition=Q(gold__isnull=False),
                name="gold_check_once_per_batch",
            ),
            models.CheckConstraint(
                condition=Q(is_gold=False, gold__isnull=True) | Q(is_gold=True, gold__isnull=False),
                name="gold_check_has_its_gold",
            ),
        ]
        # The queue walks this index in order and stops at the first free slot
        # (queue.assignments.assignment_next): gold checks and the batch's own work apart,
        # each in claims, priority (highest first), id order.
        indexes = [
            models.Index(
                fields=["batch", "is_gold", "claims", "-priority", "id"],
                name="comparison_open_slots",
            )
        ]

    def __str__(self) -> str:
        return f"Comparison {self.pk} ({self.category})"

    def response(self, choice: Choice | str) -> Response:
        return self.response_a if Choice(choice) is Choice.A else self.response_b


class Demonstration(models.Model):
    """The ideal response to a prompt, written by a person (Llama 2's SFT data, §3.1).

    Lives in a batch beside comparisons (a batch may hold either or both) and freezes with
    it: the batch's freeze hash covers its demonstrations. ``written_by`` is the Pairwise
    annotator who wrote it (live annotation), empty for imported rows; ``provenance`` says
    where it came from (importer, file and line, model, live session...).
    """

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="demonstrations")
    # The same table comparisons use: a dialogue is one row whatever answers it.
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="demonstrations")
    response = models.TextField(help_text="The ideal next assistant turn.")
    source = models.CharField(
        max_length=100, blank=True, help_text="Import name, 'anthropic-hh' or 'live'."
    )
    written_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="demonstrations",
        help_text="The annotator who wrote it; empty when imported.",
    )
    provenance = models.JSONField(
        default=dict, blank=True, help_text="Where it came from: importer, file, line, model…"
    )
    content_hash = models.CharField(
        max_length=64, help_text="SHA-256 of (prompt, response): finds duplicates."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "content_hash"], name="demonstration_unique_in_batch"
            ),
        ]

    def __str__(self) -> str:
        return f"Demonstration {self.pk}: {self.response[:60]}"


class Assignment(models.Model):
    """An annotator's claim on a comparison, with the order the two responses are shown in."""

    class Status(models.TextChoices):
        ASSIGNED = "assigned", "Assigned"
        LABELLED = "labelled", "Labelled"
        SKIPPED = "skipped", "Skipped"

    # Neither foreign key has an index of its own: assignment_once_per_annotator
    # (comparison, annotator) and assignment_annotator_status (annotator, status) lead
    # with them. Each label inserts and updates one assignment: fewer indexes to write.
    comparison = models.ForeignKey(
        Comparison, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="assignments",
        db_index=False,
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ASSIGNED)
    # Randomised per annotator: which stored response (A or B) is shown on the left.
    left = models.CharField(max_length=1, choices=CHOICE_CHOICES)
    assigned_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="assignment_once_per_annotator"
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "status"], name="assignment_annotator_status"),
            models.Index(fields=["status", "assigned_at"], name="assignment_status_age"),
        ]

    def __str__(self) -> str:
        return f"{self.annotator} → {self.comparison_id} ({self.status})"


class AnnotatorBatchCount(models.Model):
    """How many tasks of a batch an annotator labelled and skipped: the task screen's
    "done" counter, read in O(open batches) instead of O(the annotator's history).

    Written only by ``annotation.queue`` in the transaction that labels or skips the assignment
    (an upsert), so it always equals the annotator's labelled / skipped assignments of
    the batch (a test checks it).
    """

    annotator = models.ForeignKey(  # indexed by annotator_batch_count_once
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="+")
    done = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # Gold checks labelled in the batch, and how many matched the expected answer (the
    # annotator's gold accuracy; labels on gold checks count in ``done`` too).
    gold_labels = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    # The same since the annotator was last resumed: what the pause rule reads.
    gold_labels_since_resume = models.PositiveIntegerField(default=0)
    gold_correct_since_resume = models.PositiveIntegerField(default=0)
    # Paused on this batch (gold accuracy below the batch's threshold, or an admin's
    # decision): the queue hands them none of its tasks. ``AnnotatorPauseEvent`` says why.
    paused = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["annotator", "batch"], name="annotator_batch_count_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.annotator_id} in batch {self.batch_id}: {self.done} done"


class Label(models.Model):
    """One annotator's judgement of one comparison. Raw labels are never aggregated away.

    ``preferred`` is in the comparison's stored A/B terms whatever the screen showed;
    ``left`` records which response was displayed on the left.
    Imported labels have no Pairwise user: ``source_annotator`` names the original rater.
    """

    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="labels",
    )
    source_annotator = models.CharField(max_length=200, blank=True)
    preferred = models.CharField(max_length=1, choices=CHOICE_CHOICES)
    # Blank for imported binary data that was never rated (e.g. Anthropic HH): margin 0.
    strength = models.CharField(max_length=32, choices=STRENGTH_CHOICES, blank=True)
    safety_a = models.CharField(max_length=10, choices=SAFETY_TAG_CHOICES, blank=True)
    safety_b = models.CharField(max_length=10, choices=SAFETY_TAG_CHOICES, blank=True)
    safety_bin = models.CharField(max_length=40, choices=SAFETY_BIN_CHOICES, blank=True)
    comment = models.TextField(blank=True)
    left = models.CharField(max_length=1, choices=CHOICE_CHOICES, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        permissions = [("export_data", "Can create and download preference-data snapshots")]
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"],
                condition=Q(annotator__isnull=False),
                name="label_once_per_annotator",
            ),
            models.UniqueConstraint(
                fields=["comparison", "source_annotator"],
                condition=Q(annotator__isnull=True),
                name="imported_label_once_per_rater",
            ),
            # A client's Idempotency-Key names one label (queue.labels.label_submit).
            models.UniqueConstraint(
                fields=["annotator", "idempotency_key"],
                condition=Q(annotator__isnull=False) & ~Q(idempotency_key=""),
                name="label_idempotency_key_once_per_annotator",
            ),
        ]

    def __str__(self) -> str:
        return f"Label {self.pk}: {self.preferred} {self.strength}"


class Snapshot(models.Model):
    """An immutable, versioned export of preference data, named by a content hash.

    The files live under ``settings.SNAPSHOTS_DIR / content_hash``; the manifest lists the
    filters, counts, schema and code versions, and a checksum per file. Built by
    ``annotation.export.services.snapshot_build`` (inline when small, by a worker otherwise).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.CharField(
        max_length=200, blank=True, help_text="A researcher's note; not part of the hash."
    )
    filters = models.JSONField(
        default=dict, help_text="The canonical filters the snapshot was made with."
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    content_hash = models.CharField(max_length=64, blank=True, db_index=True)
    manifest = models.JSONField(default=dict, blank=True)
    label_count = models.PositiveIntegerField(default=0)
    comparison_count = models.PositiveIntegerField(default=0)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a build started.")
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Last sign of life from the worker running it (config.leases).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Snapshot {self.short_hash or self.pk} ({self.status})"

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]

    @property
    def percent(self) -> int:
        if self.status == self.Status.READY:
            return 100
        return int(100 * self.progress_done / self.progress_total) if self.progress_total else 0


class ReviewFlag(models.Model):
    """Why a label (or an annotator's work in a batch) should be looked at by a reviewer.

    Written by ``annotation.review.services``: the rule checks (``label_id`` set for a
    label made much faster than its annotator's median; ``label_id`` empty and
    ``annotator_id`` set for an annotator whose choices in the batch are skewed) and the
    reward-model check (a label the model contradicts with high confidence). Flags are
    findings, recomputed when the checks run again; the reviewer's answer is a
    ``ReviewVerdict``. A frozen batch's flags never change (they are part of its hash).
    """

    class Reason(models.TextChoices):
        FAST = "fast", "Much faster than the annotator's median"
        REWARD_MODEL = "reward_model", "The reward model confidently prefers the other response"
        SIDE_BIAS = "side_bias", "The annotator picks one screen side far more than the batch"
        STRENGTH_SKEW = "strength_skew", "The annotator's strengths are far from the batch's"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="review_flags")
    comparison = models.ForeignKey(
        Comparison, null=True, blank=True, on_delete=models.CASCADE, related_name="review_flags"
    )
    label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.CASCADE, related_name="review_flags"
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    detail = models.CharField(max_length=500, help_text="What was measured, in words.")
    score = models.FloatField(
        null=True, blank=True, help_text="The measured value (a probability, a ratio)."
    )
    source = models.CharField(
        max_length=200, blank=True, help_text="Which check: 'rules' or the reward model's name."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["label", "reason"],
                condition=Q(label__isnull=False),
                name="review_flag_once_per_label",
            ),
            models.UniqueConstraint(
                fields=["batch", "annotator", "reason"],
                condition=Q(label__isnull=True),
                name="review_flag_once_per_annotator",
            ),
        ]
        indexes = [models.Index(fields=["batch", "reason"], name="review_flag_batch_reason")]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} ({self.detail})"


class ReviewVerdict(models.Model):
    """A reviewer's decision on a comparison: one of its labels accepted, or a label of the
    reviewer's own (adjudicated), and why.

    Append-only: a later verdict on the same comparison supersedes the earlier one, which
    stays as the audit trail (who, when, what, why). Only
    ``annotation.review.services.review_verdict_record`` writes rows; nothing updates or
    deletes them.
    """

    class Decision(models.TextChoices):
        ACCEPT = "accept", "Accepted a label"
        ADJUDICATE = "adjudicate", "Adjudicated"

    comparison = models.ForeignKey(
        Comparison, on_delete=models.PROTECT, related_name="review_verdicts", db_index=False
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_verdicts"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    accepted_label = models.ForeignKey(
        Label, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The label that stands, in the comparison's A/B terms (copied from an accepted label).
    preferred = models.CharField(max_length=1, choices=CHOICE_CHOICES)
    strength = models.CharField(max_length=32, choices=STRENGTH_CHOICES, blank=True)
    safety_a = models.CharField(max_length=10, choices=SAFETY_TAG_CHOICES, blank=True)
    safety_b = models.CharField(max_length=10, choices=SAFETY_TAG_CHOICES, blank=True)
    safety_bin = models.CharField(max_length=40, choices=SAFETY_BIN_CHOICES, blank=True)
    reason = models.TextField(help_text="Why: the reviewer's note, required.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        permissions = [("review_labels", "Can review labels and record verdicts")]
        indexes = [models.Index(fields=["comparison", "id"], name="review_verdict_comparison")]

    def __str__(self) -> str:
        return f"Verdict {self.pk} on comparison {self.comparison_id}: {self.preferred}"


class GoldComparison(models.Model):
    """A comparison with a known answer, used to check annotators.

    Marked by an admin (``annotation.quality.gold.gold_mark``; imported with a trusted
    label, or labelled and reviewed); the expected answer is in the comparison's stored
    A/B terms, with an optional minimum strength. Batches with a ``gold_rate`` hold a copy
    of it (``Comparison.gold``), mixed into annotators' work. Labels on those copies are
    checks, never training data; the source comparison's own labels train as before.
    """

    comparison = models.OneToOneField(
        Comparison, on_delete=models.PROTECT, related_name="gold_standard"
    )
    preferred = models.CharField(
        max_length=1, choices=CHOICE_CHOICES, help_text="The expected preferred response (A/B)."
    )
    min_strength = models.CharField(
        max_length=32,
        choices=STRENGTH_CHOICES,
        blank=True,
        help_text="The label must say at least this strongly (blank: any strength).",
    )
    note = models.TextField(blank=True, help_text="Why this answer is right.")
    is_active = models.BooleanField(
        default=True, help_text="Inactive gold is no longer mixed into batches."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Gold {self.pk}: comparison {self.comparison_id} → {self.preferred}"


class AnnotatorPauseEvent(models.Model):
    """An annotator paused on or resumed in a batch: who (empty: the gold rule), why, and
    their gold record at that moment. Append-only: the audit trail of
    ``AnnotatorBatchCount.paused``."""

    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="pause_events")
    paused = models.BooleanField(help_text="True: paused; False: resumed.")
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who decided; empty when the gold rule paused them.",
    )
    reason = models.TextField()
    gold_labels = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.annotator_id} {'paused' if self.paused else 'resumed'} in {self.batch_id}"
