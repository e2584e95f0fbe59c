"""Create a snapshot of the preference data and print its manifest.

    python manage.py pairwise_export --batch week-1 --batch week-2 --category safety \\
        --strength better --min-agreement 0.67 --from 2026-11-01 --to 2026-11-30 --out ./export

Builds in this process (no worker needed). ``--out`` also copies the files there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.export import services
from annotation.models import Snapshot


class Command(BaseCommand):
    help = (
        "Create an immutable snapshot of the preference data (all formats) and print its manifest."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch", action="append", dest="batches", default=[], help="Batch name (repeatable)."
        )
        parser.add_argument(
            "--category",
            action="append",
            dest="categories",
            default=[],
            help="helpfulness or safety.",
        )
        parser.add_argument(
            "--strength",
            action="append",
            dest="strengths",
            default=[],
            help="A strength, or 'unrated'.",
        )
        parser.add_argument(
            "--safety-bin",
            action="append",
            dest="safety_bins",
            default=[],
            help="A safety bin, or 'none'.",
        )
        parser.add_argument(
            "--min-agreement", type=float, help="Keep comparisons whose majority has this share."
        )
        parser.add_argument(
            "--min-annotators", type=int, help="Keep comparisons with at least this many labels."
        )
        parser.add_argument("--from", dest="date_from", help="First label day, YYYY-MM-DD (UTC).")
        parser.add_argument("--to", dest="date_to", help="Last label day, YYYY-MM-DD (UTC).")
        parser.add_argument("--name", default="", help="A note to remember the snapshot by.")
        parser.add_argument(
            "--out", type=Path, help="Also copy the snapshot's files into this folder."
        )

    def handle(self, *args, **opts):
        filters = {
            k: opts[k]
            for k in (
                "batches",
                "categories",
                "strengths",
                "safety_bins",
                "min_agreement",
                "min_annotators",
                "date_from",
                "date_to",
            )
        }
        try:
            snapshot = services.snapshot_request(filters=filters, name=opts["name"], inline=True)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        if snapshot.status != Snapshot.Status.READY:
            raise CommandError(f"Snapshot {snapshot.pk} failed: {snapshot.error}")
        directory = services.snapshot_directory(snapshot)
        if opts["out"]:
            opts["out"].mkdir(parents=True, exist_ok=True)
            for name in [*snapshot.manifest["files"], services.MANIFEST]:
                shutil.copyfile(directory / name, opts["out"] / name)
            directory = opts["out"]
        self.stdout.write(json.dumps(snapshot.manifest, indent=2, ensure_ascii=False))
        if snapshot.label_count == 0:
            self.stdout.write(
                self.style.WARNING("No labels match these filters: the snapshot is empty.")
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Snapshot {snapshot.pk} {snapshot.content_hash[:12]}: {snapshot.label_count} labels, "
                f"{snapshot.comparison_count} comparisons in {directory}"
            )
        )
