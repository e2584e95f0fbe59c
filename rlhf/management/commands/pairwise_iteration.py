"""Run one weekly RLHF iteration from the command line, stage by stage, in this process.

    python manage.py pairwise_iteration --batches week-1 --method dpo --parent RLHF-V1 \
        --set dpo.beta=0.1 --set dpo.loss_type=ipo
    python manage.py pairwise_iteration --batches week-1 --method both \
        --set ppo.steps=8 --set sampling.max_new_tokens=64 --set reward_helpfulness_path=var/models/rm-h ...
    python manage.py pairwise_iteration --resume 3      # continue RLHF-V3 where it stopped
    python manage.py pairwise_iteration --batches week-1 --queue   # hand it to the workers
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Batch
from modeling.selectors import batches_frozen
from rlhf import services
from rlhf.management.commands._settings import settings_from_options, validation_text
from rlhf.methods import method_help
from rlhf.models import Iteration


class Command(BaseCommand):
    help = "Launch (or resume) an RLHF iteration: reward models → RS/PPO → register → evaluate → next batch."

    def add_arguments(self, parser):
        parser.add_argument(
            "--batches",
            nargs="*",
            default=[],
            help="Names of frozen batches (default: all frozen).",
        )
        parser.add_argument(
            "--method",
            default=Iteration.Method.BOTH,
            choices=Iteration.Method.values,
            help=method_help(),
        )
        parser.add_argument(
            "--parent",
            default="",
            metavar="NAME",
            help="Start from this policy (an accepted RLHF-V{N} or a base model) instead of the "
            "current one: several methods from one parent compare side by side in the lineage.",
        )
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="An IterationSettings field by its dotted path, e.g. ppo.steps=8 (JSON values).",
        )
        parser.add_argument("--resume", type=int, metavar="N", help="Resume RLHF-V{N}.")
        parser.add_argument(
            "--queue",
            action="store_true",
            help="Queue the stages for the Celery workers and return.",
        )

    def handle(self, *args, **opts):
        try:
            if opts["resume"]:
                iteration = Iteration.objects.filter(number=opts["resume"]).first()
                if iteration is None:
                    raise CommandError(f"No iteration RLHF-V{opts['resume']}.")
                stage = self._inline(
                    opts, lambda: services.iteration_resume(iteration_id=iteration.pk)
                )
                self.stdout.write(f"Resuming {iteration.name} at {stage.name}")
            else:
                batches = batches_frozen()
                if opts["batches"]:
                    batches = Batch.objects.filter(name__in=opts["batches"])
                    missing = set(opts["batches"]) - set(batches.values_list("name", flat=True))
                    if missing:
                        raise CommandError(f"No batch named {', '.join(sorted(missing))}.")
                settings_json = settings_from_options(opts["set"])
                iteration = self._inline(
                    opts,
                    lambda: services.iteration_launch(
                        batch_ids=list(batches.values_list("pk", flat=True)),
                        method=opts["method"],
                        settings_json=settings_json,
                        parent=opts["parent"] or None,
                    ),
                )
                self.stdout.write(f"Launched {iteration.name}")
        except ValidationError as exc:
            raise CommandError(validation_text(exc)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if opts["queue"]:
            return
        iteration.refresh_from_db()
        for stage in iteration.stages.order_by("order"):
            self.stdout.write(f"  {stage.get_name_display():<20} {stage.status:<8} {stage.message}")
        if iteration.status == Iteration.Status.FAILED:
            raise CommandError(
                f"{iteration.name} failed: {iteration.error} — fix it and run with --resume {iteration.number}."
            )
        self.stdout.write(self.style.SUCCESS(f"{iteration.name}: {iteration.get_status_display()}"))

    def _inline(self, opts, launch):
        """Without --queue, run the chain of stage tasks here (eager Celery)."""
        from config.celery import app

        if opts["queue"]:
            return launch()
        eager = app.conf.task_always_eager
        app.conf.task_always_eager = True
        try:
            return launch()
        finally:
            app.conf.task_always_eager = eager
