"""Score (dialogue, response) pairs with a reward model.

    python manage.py pairwise_score --model RM-helpfulness-V1 input.jsonl [-o scores.jsonl]

Each input line: {"dialogue": [{"role": "user", "content": ...}, ...], "response": "..."}.
Each output line: the input plus "score". A tqdm bar shows progress.
"""

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from modeling.models import ModelVersion


class Command(BaseCommand):
    help = "Score dialogue/response pairs from a JSONL file with a reward model."

    def add_arguments(self, parser):
        parser.add_argument("input", help="JSONL file ('-' for stdin)")
        parser.add_argument("--model", required=True, help="reward model name or id")
        parser.add_argument("-o", "--output", default="-")
        parser.add_argument("--batch-size", type=int, default=16)

    def handle(self, *args, **opts):
        from modeling.ml.inference import RewardScorer

        ref = opts["model"]
        model = (
            ModelVersion.objects.filter(pk=int(ref)).first()
            if ref.isdigit()
            else ModelVersion.objects.filter(name=ref).first()
        )
        if model is None or not (model.is_reward and model.is_ready):
            raise CommandError(f"{ref}: no ready reward model by that name or id")
        stream = sys.stdin if opts["input"] == "-" else open(opts["input"])  # noqa: SIM115
        rows = []
        for n, line in enumerate(stream, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    row["dialogue"], row["response"]  # noqa: B018 - presence check
                except (ValueError, KeyError, TypeError) as exc:
                    raise CommandError(
                        f"line {n}: needs JSON with 'dialogue' and 'response' ({exc})"
                    ) from None
                rows.append(row)
        scorer = RewardScorer.load(model.path)
        with tqdm(total=len(rows), unit="pair", file=sys.stderr) as bar:
            scores = scorer.score(
                [r["dialogue"] for r in rows],
                [r["response"] for r in rows],
                batch_size=opts["batch_size"],
                on_batch=bar.update,
            )
        out = sys.stdout if opts["output"] == "-" else open(opts["output"], "w")  # noqa: SIM115
        for row, score in zip(rows, scores, strict=True):
            out.write(json.dumps({**row, "score": score}) + "\n")
        if out is not sys.stdout:
            out.close()
