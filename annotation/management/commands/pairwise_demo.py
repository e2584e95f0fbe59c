"""Seed a demo: users for every role, guidelines, and an open batch of comparisons we wrote.

    python manage.py pairwise_demo

Every demo user's password is the published ``pairwise-demo``: with DEBUG off (a server
others can reach) the command refuses unless asked with ``--demo-passwords``.

Idempotent: running it again resets the demo passwords and changes nothing else. The
comparisons live in ``annotation/demo_data.jsonl`` (the native import format) and go in
through the same import service as any upload.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation import selectors, services
from annotation.domain import Category
from annotation.models import Batch

DEMO_PASSWORD = "pairwise-demo"
DEMO_DATA = Path(__file__).resolve().parents[2] / "demo_data.jsonl"
DEMO_BATCH = "Demo batch · week 1"

# (username, role, superuser)
DEMO_USERS = [
    ("annotator1", "annotator", False),
    ("annotator2", "annotator", False),
    ("researcher", "researcher", False),
    ("admin", "admin", True),
]

GUIDELINES = {
    Category.HELPFULNESS: (
        "Helpfulness: which response better serves the user?",
        """Read the whole dialogue first: the last user turn is what both responses answer, but earlier turns set the context (preferences, constraints, clarifications).

Prefer the response that:
- does what the user asked, respecting every constraint they gave (length, format, tone);
- is correct: check facts, code and arithmetic where you can;
- is clear and well organised, without padding or needless disclaimers;
- asks a clarifying question only when the request is genuinely ambiguous.

Then rate how much better it is. Significantly better: one response clearly fails the user and the other does not. Better: both are usable but one is clearly preferable. Slightly better: a small but real difference. Negligibly better / Unsure: you can barely tell them apart.

Judge the content, not the position: Response 1 and Response 2 are shown in a random order.""",
    ),
    Category.SAFETY: (
        "Safety: which response is safer, and is each one safe?",
        """First tag each response safe or unsafe on its own. A response is unsafe if it helps with illegal acts or violence, gives dangerous instructions, harasses or demeans people or groups, shares private information, or handles self-harm carelessly.

Then choose the better response, still using the helpfulness criteria: among safe responses, prefer the one that helps most.
- A refusal is safe, but an unnecessary refusal of a harmless request is not helpful.
- For risky requests, the best answer declines the harmful part and offers a safe, useful alternative.
- On distress or self-harm, prefer warmth, no judgement, and pointers to real help (crisis lines, professionals).

If you prefer a response you tagged unsafe, add a comment saying why: such labels are reviewed.""",
    ),
}


class Command(BaseCommand):
    help = "Create demo users (password 'pairwise-demo'), guidelines and an open demo batch."

    def add_arguments(self, parser):
        parser.add_argument(
            "--demo-passwords",
            action="store_true",
            help=f"Seed the users with the known password '{DEMO_PASSWORD}' even with DEBUG "
            "off. Anyone who reads this help can then sign in as admin.",
        )

    @transaction.atomic
    def handle(self, *args, **options):
        if not settings.DEBUG and not options["demo_passwords"]:
            raise CommandError(
                f"DEBUG is off: this looks like a server others can reach, and the demo users' "
                f"password ('{DEMO_PASSWORD}', admin included) is published. Run with "
                "--demo-passwords if that is really what you want."
            )
        users = get_user_model().objects
        for username, role, superuser in DEMO_USERS:
            user, created = users.get_or_create(username=username)
            user.set_password(DEMO_PASSWORD)
            if superuser:
                user.is_superuser = user.is_staff = True
            user.save()
            services.user_set_role(user=user, role=role)
            self.stdout.write(f"{'created' if created else 'kept'} user {username} ({role})")

        for category, (title, body) in GUIDELINES.items():
            active = selectors.guideline_active(category)
            if active is None or (active.title, active.body) != (title, body):
                guideline = services.guideline_publish(category=category, title=title, body=body)
                self.stdout.write(f"published {category} guidelines v{guideline.version}")

        admin = users.get(username="admin")
        batch = selectors.batch_list().filter(name=DEMO_BATCH).first()
        if batch is None:
            batch = services.batch_create(
                name=DEMO_BATCH,
                description="Comparisons written by the Pairwise authors: multi-turn dialogues, helpfulness and safety.",
                iteration=1,
                labels_per_comparison=2,
                created_by=admin,
            )
        if batch.status == Batch.Status.DRAFT:
            with DEMO_DATA.open("rb") as stream:
                report = services.comparisons_import(
                    batch=batch,
                    stream=stream,
                    fmt="native",
                    filename=DEMO_DATA.name,
                    source="pairwise-demo",
                    created_by=admin,
                )
            self.stdout.write(report.summary())
            services.batch_transition(batch=batch, to=Batch.Status.OPEN, by=admin)
        batch.refresh_from_db()
        self.stdout.write(f"batch “{batch.name}” is {batch.status}")

        self.stdout.write(
            self.style.SUCCESS(
                f"\nDemo logins (password for all: {DEMO_PASSWORD}):\n"
                "  annotator1, annotator2  — annotators: label comparisons at /annotate/\n"
                "  researcher              — researcher: export data at /data/\n"
                "  admin                   — admin: batches, models, RLHF, Django admin"
            )
        )
