"""The model registry and training runs.

``ModelVersion`` is one model on disk (base, reward or policy) with its lineage: parent
checkpoint, tokenizer, config, metrics and the frozen batches it was trained on (their
freeze hashes are copied into ``trained_on_hashes`` so the record survives renames).
``TrainingRun`` is one job making a model: its progress, log, error and held-out split.

A model is ``ready`` only once its folder is complete: trainers write beside the final path
and rename at the end (see ``modeling.ml.training.trainer``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ModelKind(models.TextChoices):
    BASE = "base", "Base"
    REWARD_HELPFULNESS = "reward_helpfulness", "Reward (helpfulness)"
    REWARD_SAFETY = "reward_safety", "Reward (safety)"
    POLICY = "policy", "Policy"


REWARD_KINDS = (ModelKind.REWARD_HELPFULNESS, ModelKind.REWARD_SAFETY)


class Backbone(models.TextChoices):
    """What network a model is (``modeling.ml.backbones`` decides it from the folder)."""

    DECODER = "decoder", "Decoder (causal LM)"
    ENCODER = "encoder", "Encoder (reward models only)"


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        TRAINING = "training", "Training"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.CharField(
        max_length=200, unique=True, help_text='e.g. "base-v0", "RM-helpfulness-V1", "RLHF-V1"'
    )
    kind = models.CharField(max_length=30, choices=ModelKind.choices, db_index=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    path = models.CharField(
        max_length=500, blank=True, help_text="Folder of the HF-format checkpoint."
    )
    tokenizer_path = models.CharField(max_length=500, blank=True)
    backbone = models.CharField(
        max_length=10,
        choices=Backbone.choices,
        default=Backbone.DECODER,
        help_text="An encoder starts reward models only; it can never be a policy.",
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    trained_on = models.ManyToManyField(
        "annotation.Batch", blank=True, related_name="model_versions"
    )
    trained_on_hashes = models.JSONField(
        default=dict, blank=True, help_text="Batch name → freeze hash at training time."
    )
    description = models.TextField(blank=True)
    # An admin's mark: this reward model judges policies it was not optimised against
    # (Gao et al. 2022's "gold" reward model). Evaluation only: no recipe uses it to train.
    is_judge = models.BooleanField(
        default=False, help_text="Judges new policies in evaluations; never a policy's reward."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("launch_training", "Can create base models and launch reward-model training")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY

    @property
    def is_reward(self) -> bool:
        return self.kind in REWARD_KINDS

    @property
    def lora(self) -> dict:
        """The LoRA settings its weights were trained with ({} for full fine-tuning): a reward
        model's training config, or a policy's stage result. Adapters are always merged."""
        lora = (self.config.get("training") or {}).get("lora") or self.metrics.get("lora") or {}
        return lora if lora.get("rank") else {}


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        BASE = "base", "Create base model"
        REWARD_HELPFULNESS = "reward_helpfulness", "Helpfulness reward model"
        REWARD_SAFETY = "reward_safety", "Safety reward model"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    base_model = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs_started_from",
        help_text="The checkpoint a reward model starts from.",
    )
    batches = models.ManyToManyField("annotation.Batch", blank=True, related_name="training_runs")
    config = models.JSONField(
        default=dict, blank=True, help_text="Training config and data recipe."
    )
    result_name = models.CharField(
        max_length=200, help_text="Name the finished model will be registered under."
    )
    result = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    accuracy = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    phase = models.CharField(max_length=40, blank=True)
    held_out = models.JSONField(
        default=dict,
        blank=True,
        help_text="The held-out split: fraction, seed, counts, prompt keys.",
    )
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Times a worker started it (more than 1: resumed)."
    )
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Last sign of life from the worker running it (config.leases).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Run {self.pk}: {self.get_kind_display()} → {self.result_name}"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def percent(self) -> int:
        return int(100 * self.step / self.total_steps) if self.total_steps else 0


class ScoreJob(models.Model):
    """One request to score (dialogue, response) items with a reward model, run by a worker.

    The API creates it and returns at once; ``modeling.tasks.score_job_execute`` loads the
    reward model in the worker (the web process never imports torch) and fills ``scores``.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    model = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="score_jobs")
    items = models.JSONField(
        help_text='[{"dialogue": [{"role", "content"}, ...], "response": ...}]'
    )
    single = models.BooleanField(
        default=False, help_text="Asked for one item (reply with score, not scores)."
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    scores = models.JSONField(null=True, blank=True, help_text="One float per item, in order.")
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker started it.")
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
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Score job {self.pk} ({self.status}) with {self.model_id}"

    @property
    def is_done(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)
