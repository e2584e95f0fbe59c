"""The weekly iteration as data: its stages (each one Celery task), the policy it produced
and the evaluation that accepted or rejected it.

Writes go through ``rlhf.services``; reads through ``rlhf.selectors``. The policy of an
iteration is set only by the register stage, after its checkpoint folder is complete, so
a failed or half-run iteration never names a usable policy.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Iteration(models.Model):
    """RLHF-V{number}: reward models → a policy-training method (``rlhf.methods``) →
    register → evaluate → next batch."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        FAILED = "failed", "Failed"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    class Method(models.TextChoices):
        """What trains the policy (``rlhf.methods`` says what each needs and costs)."""

        REJECTION_SAMPLING = "rejection_sampling", "Rejection sampling"
        PPO = "ppo", "PPO"
        BOTH = "both", "Rejection sampling, then PPO"
        SFT = "sft", "SFT from demonstrations"
        DPO = "dpo", "DPO"
        RS_DPO = "rs_dpo", "Rejection sampling, then DPO"
        ONLINE_DPO = "online_dpo", "Online DPO"
        RRHF = "rrhf", "RRHF"
        PRO = "pro", "PRO"
        GRPO = "grpo", "GRPO"
        RLOO = "rloo", "RLOO"

    number = models.PositiveIntegerField(unique=True, help_text="N of RLHF-V{N}.")
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True
    )
    method = models.CharField(max_length=20, choices=Method.choices, default=Method.BOTH)
    config = models.JSONField(
        default=dict, help_text="Settings per stage (rlhf.services.IterationSettings)."
    )
    batches = models.ManyToManyField(
        "annotation.Batch",
        related_name="rlhf_iterations",
        help_text="The frozen batches the reward models and prompts come from.",
    )
    start_policy_name = models.CharField(max_length=200)
    start_policy_path = models.CharField(max_length=500)
    reward_helpfulness_path = models.CharField(max_length=500, blank=True)
    reward_safety_path = models.CharField(max_length=500, blank=True)
    # Set by the register stage only, once the checkpoint folder is whole.
    policy_name = models.CharField(max_length=200, blank=True)
    policy_path = models.CharField(max_length=500, blank=True)
    next_batch = models.ForeignKey(
        "annotation.Batch",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="sampled_by_iteration",
    )
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"RLHF-V{self.number}"

    @property
    def name(self) -> str:
        return f"RLHF-V{self.number}"


class IterationStage(models.Model):
    class Name(models.TextChoices):
        REWARD_MODELS = "reward_models", "Reward models"
        SFT = "sft", "SFT"
        REJECTION_SAMPLING = "rejection_sampling", "Rejection sampling"
        DPO = "dpo", "DPO"
        ONLINE_DPO = "online_dpo", "Online DPO"
        RRHF = "rrhf", "RRHF"
        PRO = "pro", "PRO"
        GRPO = "grpo", "GRPO"
        RLOO = "rloo", "RLOO"
        PPO = "ppo", "PPO"
        REGISTER = "register", "Register policy"
        EVALUATE = "evaluate", "Evaluate"
        NEXT_BATCH = "next_batch", "Next batch"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=30, choices=Name.choices)
    order = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    progress = models.FloatField(default=0.0, help_text="0..1")
    message = models.CharField(max_length=300, blank=True)
    log = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Last sign of life from the worker running it (config.leases).",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["iteration", "order"]
        constraints = [
            models.UniqueConstraint(fields=["iteration", "name"], name="stage_once_per_iteration")
        ]

    def __str__(self) -> str:
        return f"{self.iteration} · {self.get_name_display()} ({self.status})"


class PolicyEvaluation(models.Model):
    """The new policy against the previous one on held-out prompts, judged by the RMs."""

    iteration = models.OneToOneField(Iteration, on_delete=models.CASCADE, related_name="evaluation")
    candidate_name = models.CharField(max_length=200)
    baseline_name = models.CharField(max_length=200)
    n_prompts = models.PositiveIntegerField()
    wins = models.PositiveIntegerField()
    ties = models.PositiveIntegerField()
    losses = models.PositiveIntegerField()
    win_rate = models.FloatField()
    ci_low = models.FloatField(help_text="Wilson 95% interval, lower end.")
    ci_high = models.FloatField()
    candidate_helpfulness = models.FloatField()
    candidate_safety = models.FloatField()
    candidate_unsafe_share = models.FloatField(help_text="Share the safety RM scores below 0.15.")
    baseline_helpfulness = models.FloatField()
    baseline_safety = models.FloatField()
    baseline_unsafe_share = models.FloatField()
    accepted = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.candidate_name} vs {self.baseline_name}: {self.win_rate:.0%}"


class JudgedBy(models.TextChoices):
    """Who decided which of two responses is better: the three judges of an evaluation."""

    PROXY = "proxy", "Proxy reward models"  # the RMs the policy was optimised against
    JUDGE = "judge", "Judge reward model"  # an RM it never saw (marked judge by an admin)
    PEOPLE = "people", "People"  # a blind human evaluation batch


class WinRate(models.Model):
    """One policy version against another on the same held-out prompts, by one judge
    (Llama 2 Fig. 11 / 16: win / tie / loss with an interval)."""

    iteration = models.ForeignKey(
        Iteration, on_delete=models.CASCADE, related_name="win_rates", null=True, blank=True
    )
    candidate_name = models.CharField(max_length=200, db_index=True)
    baseline_name = models.CharField(max_length=200)
    judged_by = models.CharField(max_length=10, choices=JudgedBy.choices)
    judge_name = models.CharField(
        max_length=300, help_text="The reward model(s) that judged, or the evaluation batch."
    )
    n = models.PositiveIntegerField()
    wins = models.PositiveIntegerField()
    ties = models.PositiveIntegerField()
    losses = models.PositiveIntegerField()
    win_rate = models.FloatField(help_text="(wins + ties / 2) / n")
    ci_low = models.FloatField(help_text="Wilson 95% interval, lower end.")
    ci_high = models.FloatField()
    details = models.JSONField(
        default=dict, blank=True, help_text="Prompts (content hashes), mean scores and lengths."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.candidate_name} vs {self.baseline_name} by {self.judged_by}: {self.win_rate:.0%}"


class HumanEvaluation(models.Model):
    """A blind evaluation batch: two versions' responses to held-out prompts, side by side
    in random order, labelled by people in the normal annotator page. Its batch is marked
    ``evaluation``, so no model ever trains on it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        OPEN = "open", "Open for labels"
        FAILED = "failed", "Failed"

    candidate_name = models.CharField(max_length=200)
    candidate_path = models.CharField(max_length=500)
    baseline_name = models.CharField(max_length=200)
    baseline_path = models.CharField(max_length=500)
    iteration = models.ForeignKey(
        Iteration,
        on_delete=models.PROTECT,
        related_name="human_evaluations",
        help_text="Whose held-out prompts are asked.",
    )
    n_prompts = models.PositiveIntegerField()
    batch = models.OneToOneField(
        "annotation.Batch",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="human_evaluation",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"People: {self.candidate_name} vs {self.baseline_name}"


class LiveSession(models.Model):
    """A live multi-turn annotation (Llama 2 protocol): each turn two generated responses,
    the annotator's pick joins the dialogue."""

    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    batch = models.ForeignKey("annotation.Batch", on_delete=models.PROTECT, related_name="+")
    turns = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Live session {self.pk} ({len(self.turns)} turns)"


class LiveTurn(models.Model):
    class Status(models.TextChoices):
        GENERATING = "generating", "Generating"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        LABELLED = "labelled", "Labelled"

    session = models.ForeignKey(LiveSession, on_delete=models.CASCADE, related_name="live_turns")
    prompt_text = models.TextField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.GENERATING)
    comparison = models.ForeignKey(
        "annotation.Comparison", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Live turn {self.pk} ({self.status})"
