"""Make a blind human evaluation batch of two policy versions.

    python manage.py pairwise_human_eval --candidate RLHF-V2 --baseline RLHF-V1 --prompts 50
    python manage.py pairwise_human_eval --candidate RLHF-V2 --baseline RLHF-V1 --queue
    python manage.py pairwise_human_eval --result 3        # people's win rate so far

Without ``--queue`` the responses are sampled in this process; the batch opens for the
annotators when it is done.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from rlhf import human_evaluation, jobs
from rlhf.models import HumanEvaluation


class Command(BaseCommand):
    help = "Make a blind evaluation batch of two model versions (or print one's result)."

    def add_arguments(self, parser):
        parser.add_argument("--candidate", help="e.g. RLHF-V2")
        parser.add_argument("--baseline", help="e.g. RLHF-V1 or base-v1")
        parser.add_argument("--prompts", type=int, default=50, help="held-out prompts to ask")
        parser.add_argument("--queue", action="store_true", help="hand the sampling to a worker")
        parser.add_argument("--result", type=int, help="print the result of evaluation N")

    def handle(self, *args, **opts):
        if opts["result"] is not None:
            evaluation = HumanEvaluation.objects.filter(pk=opts["result"]).first()
            if evaluation is None:
                raise CommandError(f"No human evaluation {opts['result']}.")
            result = human_evaluation.human_evaluation_result_get(evaluation)
            self.stdout.write(json.dumps(result, indent=2))
            return
        if not opts["candidate"] or not opts["baseline"]:
            raise CommandError("Give --candidate and --baseline (or --result N).")
        try:
            evaluation = human_evaluation.human_evaluation_create(
                candidate=opts["candidate"],
                baseline=opts["baseline"],
                n_prompts=opts["prompts"],
                enqueue=opts["queue"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if opts["queue"]:
            self.stdout.write(f"Queued blind evaluation #{evaluation.pk}.")
            return
        jobs.human_evaluation_build(evaluation_id=evaluation.pk)
        evaluation.refresh_from_db()
        if evaluation.status == HumanEvaluation.Status.FAILED:
            raise CommandError(evaluation.error)
        self.stdout.write(
            f"Opened {evaluation.batch.name!r}: {evaluation.batch.comparisons.count()} blind pairs of "
            f"{evaluation.candidate_name} vs {evaluation.baseline_name}."
        )
