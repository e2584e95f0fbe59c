"""Create the default base model (tokenizer + small pretrained Llama) and register it.

python manage.py pairwise_create_base_model [--name base-v1] [--max-steps 3000]
    [--max-seconds 480] [--shared-hh] [--no-frozen-batches] [--queue]
python manage.py pairwise_create_base_model --register /path/to/llama-3-8b-instruct --name llama3
    [--template pairwise]   # a tokenizer without a chat template: use Pairwise's markers
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from modeling import jobs, services
from modeling.management.commands._progress import run_to_success


class Command(BaseCommand):
    help = "Create (or --register) a base model in the registry."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="")
        parser.add_argument("--max-steps", type=int, default=None)
        parser.add_argument("--max-seconds", type=float, default=None)
        parser.add_argument(
            "--shared-hh",
            action="store_true",
            help="also pretrain on HH dialogues in SHARED_DATA_DIR",
        )
        parser.add_argument("--no-frozen-batches", action="store_true")
        parser.add_argument(
            "--register",
            metavar="PATH",
            help="register an existing local HF checkpoint folder instead",
        )
        parser.add_argument(
            "--template",
            choices=["auto", "pairwise"],
            default="auto",
            help="with --register: the chat template (auto: the tokenizer's own, or Pairwise's "
            "markers when it carries them; pairwise: Pairwise's, for a tokenizer without one)",
        )
        parser.add_argument(
            "--queue", action="store_true", help="run in a Celery worker instead of here"
        )

    def handle(self, *args, **opts):
        try:
            if opts["register"]:
                model = jobs.checkpoint_register(
                    name=opts["name"] or opts["register"].rstrip("/").split("/")[-1],
                    path=opts["register"],
                    template=opts["template"],
                )
                how = model.config.get("chat_template_reason", "")
                self.stdout.write(
                    self.style.SUCCESS(f"registered {model.name} (id {model.pk}). Template: {how}")
                )
                return
            config = {
                k: v
                for k, v in (("max_steps", opts["max_steps"]), ("max_seconds", opts["max_seconds"]))
                if v is not None
            }
            run = services.base_model_launch(
                name=opts["name"],
                config=config,
                use_shared_hh=opts["shared_hh"],
                use_frozen_batches=not opts["no_frozen_batches"],
                enqueue=opts["queue"],
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):  # name the field: --register PATH, --template, --name
                raise CommandError(
                    "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
                ) from None
            raise CommandError("; ".join(exc.messages)) from None
        if opts["queue"]:
            self.stdout.write(f"queued run {run.pk} → {run.result_name}")
            return
        run = run_to_success(run.pk, self.stdout)
        self.stdout.write(self.style.SUCCESS(f"{run.result_name} ready (id {run.result_id})"))
