"""Import preference data into a batch and print the report.

    python manage.py pairwise_import ../shared/data/hh-rlhf/helpful-base/test.jsonl.gz \\
        --batch hh-helpful --format hh --category helpfulness --skip-invalid
    python manage.py pairwise_import ../shared/data/pandalm-testset/data/testset-v1.json \\
        --batch pandalm --format pandalm --skip-invalid

Formats: hh, native, pairwise (Pairwise's own pairwise export), pandalm (JSON array with
annotator1..N). All or nothing unless ``--skip-invalid``; rows already in the batch are
reported, not duplicated. The batch is created (as a draft) when it does not exist.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation import importers, services
from annotation.models import Batch


class Command(BaseCommand):
    help = "Import preference data (hh, native, pairwise, pandalm) into a batch."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--batch", required=True, help="Batch name; created as a draft if missing."
        )
        parser.add_argument("--format", dest="fmt", required=True, choices=importers.FORMATS)
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
        try:
            if batch is None:
                batch = services.batch_create(name=opts["batch"])
                self.stdout.write(f"Created batch {batch.name!r} (draft).")
            with open(path, "rb") as stream:
                report = services.comparisons_import(
                    batch=batch,
                    stream=stream,
                    fmt=opts["fmt"],
                    filename=path.name,
                    category=opts["category"],
                    with_labels=not opts["no_labels"],
                    skip_invalid=opts["skip_invalid"],
                )
        except importers.ImportFileError as exc:
            for problem in exc.problems:
                self.stderr.write(f"  {problem}")
            raise CommandError(
                f"{path.name}: {len(exc.problems)} invalid row(s); nothing was imported."
            ) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        for problem in report.skipped_invalid:
            self.stdout.write(f"  skipped {problem}")
        self.stdout.write(self.style.SUCCESS(report.summary()))
