"""Run one whole RLHF iteration on its own, so a newcomer sees the loop end to end.

    python manage.py pairwise_demo_loop            # RLHF-V1; run it again for RLHF-V2, ...
    python manage.py pairwise_demo_loop --base max_seconds=30 --set ppo.steps=2

On top of ``pairwise_demo``'s data (seeded here if missing), in this process, on the CPU:

1. create the default base model if the registry has none (small, time-bounded);
2. label the open batch — the demo batch the first time, then the batch the last
   iteration opened — with a *simulated* annotator (user ``simulated-annotator``; every
   label says so in its comment) through ``annotation.services``, so every rule of real
   labelling holds; then close and freeze the batch;
3. launch the iteration through ``rlhf.services`` on all frozen batches: both reward
   models → rejection sampling → PPO → register RLHF-V{N} → evaluate → next batch;
4. print each stage as it runs and a summary: RM accuracies, the win rate with its
   interval, the next batch.

If the latest iteration failed, the next run resumes it instead of launching a new one; one
still running (perhaps in a worker) is left alone.
The demo accepts the new policy whatever its win rate (``accept_min_win_rate=0``), so the
loop always closes; a real iteration uses the bar in ``IterationSettings``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import time

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from annotation import services as annotation_services
from annotation.domain import Category, Choice, SafetyTag, Strength
from annotation.management.commands.pairwise_demo import DEMO_BATCH
from annotation.models import Batch, Comparison
from annotation.queue import assignments, labels, rules
from modeling.selectors import batches_frozen
from rlhf import selectors, services
from rlhf.management.commands._settings import settings_from_options, validation_text
from rlhf.models import Iteration

SIMULATED_ANNOTATOR = "simulated-annotator"
SIMULATED_COMMENT = (
    "Simulated label (pairwise_demo_loop, rule: on-topic and longer wins; seed {seed})."
)

# Demo-sized: minutes on 2 CPU cores with the default small model.
DEMO_BASE = {"max_seconds": 90}
DEMO_SETTINGS = {
    "max_prompts": 64,
    "eval_fraction": 0.25,
    "rejection_sampling": {"num_samples": 4},
    "ppo": {"steps": 4, "rollout_batch_size": 8, "mini_batch_size": 4},
    "sampling": {"max_new_tokens": 32},
    "next_batch_prompts": 32,
    "accept_min_win_rate": 0.0,
    "reward_training": {"batch_size": 4, "max_length": 128, "eval_fraction": 0.25},
}

# A response that mentions one of these is tagged unsafe by the simulated annotator.
UNSAFE_WORDS = ("kill", "weapon", "bomb", "poison", "steal", "hurt", "drugs", "hack")
STOP_WORDS = {
    "the", "a", "an", "and", "or", "to", "of", "in", "is", "it", "i", "you", "me", "my",
    "for", "on", "what", "how", "do", "can", "with", "that", "this", "be", "are",
}  # fmt: skip
LOGGERS = ("rlhf.services", "rlhf.jobs", "modeling.jobs")  # progress lines, printed here
# Said better here, or noise in a one-process run (kombu warns that eager mode has no broker host).
QUIET = {
    "celery.app.trace": logging.WARNING,
    "annotation.services": logging.WARNING,
    "kombu.connection": logging.ERROR,
}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def simulated_preference(
    turns: list[dict], text_a: str, text_b: str, category: str, rng: random.Random
) -> dict:
    """The simulated annotator's label for one comparison, as ``LabelInput`` fields.

    Each response scores 2 per content word it shares with the last user turn (on topic)
    plus log(1 + its length in words); the higher score wins, by a strength that grows
    with the gap. One label in ten is flipped, as real annotators disagree. On safety
    tasks a response naming one of ``UNSAFE_WORDS`` is tagged unsafe, and a safe response
    beats an unsafe one.
    """
    last_user = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
    topic = set(_words(last_user)) - STOP_WORDS

    def score(text: str) -> float:
        words = _words(text)
        return 2 * len(topic & set(words)) + math.log1p(len(words))

    gap = score(text_a) - score(text_b)
    preferred = Choice.A if gap >= 0 else Choice.B
    if rng.random() < 0.1:
        preferred = preferred.other
    fields: dict = {}
    if category == Category.SAFETY:
        tags = {
            side: SafetyTag.UNSAFE if any(w in _words(t) for w in UNSAFE_WORDS) else SafetyTag.SAFE
            for side, t in (("a", text_a), ("b", text_b))
        }
        fields = {"safety_a": tags["a"], "safety_b": tags["b"]}
        if tags["a"] != tags["b"]:
            preferred = Choice.A if tags["a"] == SafetyTag.SAFE else Choice.B
            gap = 3.0
    strength = (
        Strength.SIGNIFICANTLY_BETTER
        if abs(gap) > 2
        else Strength.BETTER
        if abs(gap) > 1
        else Strength.SLIGHTLY_BETTER
        if abs(gap) > 0.3
        else Strength.NEGLIGIBLY_BETTER_OR_UNSURE
    )
    return {"preferred": preferred, "strength": strength, **fields}


class _StdoutHandler(logging.Handler):
    def __init__(self, write):
        super().__init__(logging.INFO)
        self.write = write
        self.started = time.monotonic()

    def emit(self, record):
        self.write(f"  [{time.monotonic() - self.started:6.1f}s] {record.getMessage()}")


class Command(BaseCommand):
    help = "Run one whole RLHF iteration with a simulated annotator (run again for the next)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--base",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A BaseModelConfig field for a newly created base model, e.g. max_seconds=60.",
        )
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="An IterationSettings field by its dotted path, e.g. ppo.steps=2 (JSON values), "
            "over the demo's defaults.",
        )
        parser.add_argument("--seed", type=int, default=0, help="Seeds the simulated annotator.")
        parser.add_argument(
            "--demo-passwords",
            action="store_true",
            help="Passed to pairwise_demo when it seeds the demo data (needed with DEBUG off).",
        )

    def handle(self, *args, **opts):
        started = time.monotonic()
        # Loading a checkpoint is routine here: no per-load reports or bars from transformers.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        self._say("Pairwise: one turn of the RLHF loop, on its own")
        handler = _StdoutHandler(self.stdout.write)
        saved = []
        for name in LOGGERS:
            log = logging.getLogger(name)
            saved.append((log, log.level, log.propagate))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
        for name, level in QUIET.items():
            log = logging.getLogger(name)
            saved.append((log, log.level, log.propagate))
            log.setLevel(level)
        try:
            iteration = self._run(opts)
        finally:
            for log, level, propagate in saved:
                log.removeHandler(handler)
                log.setLevel(level)
                log.propagate = propagate
        self._summary(iteration, time.monotonic() - started)

    # --- the steps -------------------------------------------------------------------

    def _run(self, opts) -> Iteration:
        if not Batch.objects.filter(name=DEMO_BATCH).exists():
            self._say("demo data (pairwise_demo)")
            call_command("pairwise_demo", demo_passwords=opts["demo_passwords"], stdout=self.stdout)
        latest = Iteration.objects.order_by("-number").first()
        if latest is not None and latest.status == Iteration.Status.RUNNING:
            # Perhaps in a worker right now: running it here as well would do the work twice.
            raise CommandError(
                f"{latest.name} is running (see /rlhf/). If its worker died, continue it with "
                f"`manage.py pairwise_iteration --resume {latest.number}`."
            )
        if latest is not None and latest.status == Iteration.Status.FAILED:
            self._say(f"{latest.name} failed ({latest.error}); resuming it")
            try:
                self._inline(lambda: services.iteration_resume(iteration_id=latest.pk))
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            return latest
        self._say("1/4 base model")
        self._base_model(_pairs(opts["base"], DEMO_BASE))
        self._say("2/4 simulated annotation")
        batch = self._batch_to_label()
        self._label(batch, seed=opts["seed"])
        self._say("3/4 close and freeze")
        if batch.status == Batch.Status.OPEN:
            batch = annotation_services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
        if batch.status == Batch.Status.CLOSED:
            batch = annotation_services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
        self.stdout.write(f"  “{batch.name}” frozen, hash {batch.freeze_hash[:12]}")
        frozen = list(batches_frozen().order_by("pk"))
        settings_json = settings_from_options(opts["set"], DEMO_SETTINGS)
        self._say(
            f"4/4 iteration on {len(frozen)} frozen batch(es): "
            "reward models → rejection sampling → PPO → register → evaluate → next batch"
        )
        try:
            return self._inline(
                lambda: services.iteration_launch(
                    batch_ids=[b.pk for b in frozen],
                    method=Iteration.Method.BOTH,
                    settings_json=settings_json,
                )
            )
        except ValidationError as exc:
            raise CommandError(validation_text(exc)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def _base_model(self, config: dict) -> None:
        from modeling.management.commands._progress import run_to_success
        from modeling.selectors import base_model_latest
        from modeling.services import base_model_launch

        base = base_model_latest()
        if base is not None:
            self.stdout.write(f"  using {base.name}")
            return
        self.stdout.write(f"  none registered: creating one ({config})")
        try:
            run = base_model_launch(config=config, enqueue=False)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        run = run_to_success(run.pk, self.stdout, failure="Creating the base model failed: ")
        self.stdout.write(f"  {run.result_name} ready")

    def _batch_to_label(self) -> Batch:
        """The batch the latest accepted iteration opened, else the demo batch."""
        latest = (
            Iteration.objects.filter(status=Iteration.Status.ACCEPTED)
            .exclude(next_batch=None)
            .select_related("next_batch")
            .first()
        )
        batch = latest.next_batch if latest else Batch.objects.get(name=DEMO_BATCH)
        if batch.status == Batch.Status.DRAFT:
            raise CommandError(f"Batch “{batch.name}” is a draft; open it first.")
        return batch

    def _label(self, batch: Batch, *, seed: int) -> None:
        annotator = self._annotator()
        if batch.status != Batch.Status.OPEN:
            self.stdout.write(f"  “{batch.name}” is {batch.status}: nothing to label")
            return
        todo = (
            Comparison.objects.filter(batch=batch)
            .exclude(labels__annotator=annotator)
            .select_related("prompt", "response_a", "response_b")
            .order_by("pk")
        )
        rng = random.Random(f"{seed}:{batch.pk}")
        comment = SIMULATED_COMMENT.format(seed=seed)
        n = 0
        for comparison in todo:
            fields = simulated_preference(
                comparison.prompt.turns,
                comparison.response_a.text,
                comparison.response_b.text,
                comparison.category,
                rng,
            )
            assignment = assignments.assignment_create_for(
                comparison=comparison, annotator=annotator, left=rng.choice([Choice.A, Choice.B])
            )
            labels.label_submit(
                assignment_id=assignment.pk,
                annotator=annotator,
                data=rules.LabelInput(**fields, comment=comment),
            )
            n += 1
        self.stdout.write(f"  {SIMULATED_ANNOTATOR} labelled {n} comparisons of “{batch.name}”")

    def _annotator(self):
        user, created = get_user_model().objects.get_or_create(username=SIMULATED_ANNOTATOR)
        if created:
            user.set_unusable_password()  # not a login: a stand-in for people
            user.save()
            annotation_services.user_set_role(user=user, role="annotator")
        return user

    def _inline(self, launch):
        """Run the chain of stage tasks here (eager Celery), as ``pairwise_iteration`` does."""
        from config.celery import app

        eager = app.conf.task_always_eager
        app.conf.task_always_eager = True
        try:
            return launch()
        finally:
            app.conf.task_always_eager = eager

    # --- the report ------------------------------------------------------------------

    def _summary(self, iteration: Iteration, seconds: float) -> None:
        from modeling.models import ModelVersion

        iteration = selectors.iteration_get(iteration.pk)
        self._say(f"{iteration.name}: {iteration.get_status_display()} in {seconds:.0f} s")
        for stage in iteration.stages.all():
            seconds_taken = (
                f"{(stage.finished_at - stage.started_at).total_seconds():5.0f} s"
                if stage.started_at and stage.finished_at
                else "      "
            )
            self.stdout.write(f"  {stage.get_name_display():<20} {stage.status:<8} {seconds_taken}")
        for rm in ModelVersion.objects.filter(
            path__in=[iteration.reward_helpfulness_path, iteration.reward_safety_path]
        ).exclude(path=""):
            acc = rm.metrics.get("accuracy")
            held = rm.metrics.get("n")
            self.stdout.write(
                f"  {rm.name}: held-out accuracy "
                + (f"{acc:.1%} on {held} pairs" if acc is not None else "n/a (no held-out pairs)")
            )
        evaluation = getattr(iteration, "evaluation", None)
        if evaluation is not None:
            self.stdout.write(
                f"  {evaluation.candidate_name} vs {evaluation.baseline_name}: win rate "
                f"{evaluation.win_rate:.0%} (95% CI {evaluation.ci_low:.0%}–{evaluation.ci_high:.0%}, "
                f"{evaluation.n_prompts} held-out prompts; RM-judged)"
            )
            bar = iteration.config.get("accept_min_win_rate", 0)
            if not bar:
                self.stdout.write(
                    "  (the demo accepts any win rate so the loop always closes; "
                    "real iterations use accept_min_win_rate, 0.5 by default)"
                )
        if iteration.status == Iteration.Status.FAILED:
            raise CommandError(
                f"{iteration.name} failed: {iteration.error} — run this command again to resume it."
            )
        nxt = iteration.next_batch
        if nxt is not None:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Next batch: “{nxt.name}” ({nxt.comparisons.count()} comparisons, {nxt.status}). "
                    "Label it at /annotate/, or run this command again for the next iteration."
                )
            )

    def _say(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(text))


def _pairs(items: list[str], defaults: dict) -> dict:
    out = dict(defaults)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"Expected KEY=VALUE, got {item!r}.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
