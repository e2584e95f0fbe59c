"""Import preference data into a batch and print the report.

    python manage.py pairwise_import ../shared/data/hh-rlhf/helpful-base/test.jsonl.gz \\
        --batch hh-helpful --format hh --category helpfulness --skip-invalid
    python manage.py pairwise_import ../shared/data/pandalm-testset/data/testset-v1.json \\
        --batch pandalm --format pandalm --skip-invalid
    python manage.py pairwise_import ../shared/data/hh-rlhf/helpful-base/test.jsonl.gz \\
        --batch sft-demos --format hh --kind demonstrations

Formats: hh, native, pairwise (Pairwise's own pairwise export), pandalm (JSON array with
annotator1..N). ``--kind`` says what the file holds: ``auto`` (the default) reads a line
with ``response`` (or ``messages``) and no ``chosen``/``response_a`` as a demonstration,
``demonstrations`` reads every line as one (an HH file: its chosen transcripts). All or
nothing unless ``--skip-invalid``; rows already in the batch are reported, not duplicated.
The batch is created (as a draft) when it does not exist, in the
same transaction as the import: a failed import leaves no batch behind.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation import importers, services
from annotation.models import Batch


class Command(BaseCommand):
    help = (
        "Import preference data (hh, native, pairwise, pandalm) or demonstrations (native, hh)"
        " into a batch."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--batch", required=True, help="Batch name; created as a draft if missing."
        )
        parser.add_argument("--format", dest="fmt", required=True, choices=importers.FORMATS)
        parser.add_argument(
            "--kind",
            choices=importers.KINDS,
            default="auto",
            help="What the file holds (auto: each line by its keys).",
        )
        parser.add_argument(
            "--category", choices=["helpfulness", "safety"], help="Category of rows that name none."
        )
        parser.add_argument(
            "--skip-invalid", action="store_true", help="Import the valid rows, list the rest."
        )
        parser.add_argument(
            "--no-labels", action="store_true", help="HH: import the pairs without their labels."
        )

    def handle(self, *args, **opts):
        path: Path = opts["file"]
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        batch = Batch.objects.filter(name=opts["batch"]).first()
        created = batch is None
        try:
            with transaction.atomic(), open(path, "rb") as stream:
                if created:
                    batch = services.batch_create(name=opts["batch"])
                report = services.comparisons_import(
                    batch=batch,
                    stream=stream,
                    fmt=opts["fmt"],
                    filename=path.name,
                    category=opts["category"],
                    with_labels=not opts["no_labels"],
                    skip_invalid=opts["skip_invalid"],
                    kind=opts["kind"],
                )
        except importers.ImportFileError as exc:
            unmade = f", and batch {opts['batch']!r} was not created" if created else ""
            if exc.total == 1 and not exc.lines_unchecked:
                raise CommandError(f"{exc}. Nothing was imported{unmade}.") from None
            for problem in exc.problems:
                self.stderr.write(f"  {problem}")
            if exc.more_problems:
                self.stderr.write(f"  … and {exc.more_problems} more")
            if exc.lines_unchecked:
                self.stderr.write(f"  checking stopped there: {exc.lines_unchecked} line(s) left")
            raise CommandError(
                f"{path.name}: {exc.total} invalid row(s); nothing was imported{unmade}."
            ) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if created:
            self.stdout.write(f"Created batch {batch.name!r} (draft).")
        for problem in report.skipped_invalid:
            self.stdout.write(f"  skipped {problem}")
        if report.more_skipped_invalid:
            self.stdout.write(f"  … and {report.more_skipped_invalid} more skipped")
        self.stdout.write(self.style.SUCCESS(report.summary()))
