"""Train a helpfulness or safety reward model on frozen batches, with a progress bar.

    python manage.py pairwise_train_rm --kind helpfulness --batches week-1 week-2 \
        [--base base-v1] [--margin small|large|none] [--lr 2e-4] [--epochs 1] [--name ...] [--queue]

Batches are names or ids; default: all frozen batches. Base: newest ready base model.
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from annotation.models import Batch
from modeling import selectors, services
from modeling.management.commands._progress import run_to_success
from modeling.models import ModelVersion


class Command(BaseCommand):
    help = "Train a reward model (Llama 2 recipe, margin loss) on frozen batches."

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=["helpfulness", "safety"], required=True)
        parser.add_argument("--batches", nargs="*", default=None)
        parser.add_argument(
            "--base", default=None, help="base model name (default: newest ready base)"
        )
        parser.add_argument("--margin", choices=["none", "small", "large"], default="small")
        parser.add_argument("--lr", type=float, default=None)
        parser.add_argument("--epochs", type=float, default=None)
        parser.add_argument("--max-length", type=int, default=None)
        parser.add_argument("--other-ratio", type=float, default=None)
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--lora-rank", type=int, default=0, help="LoRA adapters of this rank (0: full weights)"
        )
        parser.add_argument("--lora-alpha", type=int, default=None)
        parser.add_argument(
            "--lora-targets",
            default=None,
            help="comma-separated linear layers for the adapters (default: all-linear)",
        )
        parser.add_argument(
            "--gradient-checkpointing", action="store_true", help="less memory, more compute"
        )
        parser.add_argument(
            "--queue", action="store_true", help="run in a Celery worker instead of here"
        )

    def handle(self, *args, **opts):
        if opts["base"]:
            base = ModelVersion.objects.filter(name=opts["base"]).first()
        else:
            base = selectors.base_model_latest()
        if base is None:
            raise CommandError(
                "no base model: run pairwise_create_base_model first (or pass --base NAME)"
            )
        if opts["batches"]:
            q = Q(name__in=opts["batches"]) | Q(
                pk__in=[int(b) for b in opts["batches"] if b.isdigit()]
            )
            batch_ids = list(Batch.objects.filter(q).values_list("id", flat=True))
            if len(batch_ids) < len(opts["batches"]):
                raise CommandError(f"unknown batch among {opts['batches']}")
        else:
            batch_ids = list(selectors.batches_frozen().values_list("id", flat=True))
        config = {"margin": opts["margin"]}
        for key, opt in (
            ("learning_rate", "lr"),
            ("num_epochs", "epochs"),
            ("max_length", "max_length"),
        ):
            if opts[opt] is not None:
                config[key] = opts[opt]
        if opts["lora_rank"]:
            lora: dict = {"rank": opts["lora_rank"]}
            if opts["lora_alpha"] is not None:
                lora["alpha"] = opts["lora_alpha"]
            if opts["lora_targets"]:
                lora["target_modules"] = [t.strip() for t in opts["lora_targets"].split(",")]
            config["lora"] = lora
        if opts["gradient_checkpointing"]:
            config["gradient_checkpointing"] = True
        recipe = {} if opts["other_ratio"] is None else {"other_ratio": opts["other_ratio"]}
        try:
            run = services.reward_model_launch(
                kind=opts["kind"],
                base_model=base,
                batch_ids=batch_ids,
                name=opts["name"],
                config=config,
                recipe=recipe,
                enqueue=opts["queue"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        if opts["queue"]:
            self.stdout.write(f"queued run {run.pk} → {run.result_name}")
            return
        run = run_to_success(run.pk, self.stdout)
        m = run.result.metrics
        self.stdout.write(
            self.style.SUCCESS(
                f"{run.result_name} ready: held-out accuracy "
                + (
                    "n/a (no held-out pairs)"
                    if m["accuracy"] is None
                    else f"{m['accuracy']:.3f} on {m['n']} pairs"
                )
            )
        )
        for name, s in sorted(m.get("test_sets", {}).items()):
            self.stdout.write(f"  {name}: {s['accuracy']} (n={s['n']})")
