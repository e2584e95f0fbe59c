"""Benchmark: the Quality page's agreement statistics for one batch of 100k labels.

Seeds one batch (three labels per comparison, 40 annotators, labels that mostly agree
with a hidden truth on the signed scale, a quarter of comparisons safety) into a dedicated
PostgreSQL database (bulk inserts through the ORM), then times, over several rounds:

- ``read``: ``quality.selectors.batch_label_rows`` (the one query, rows into tuples);
- ``compute``: the plain-Python statistics on those rows (α ordinal and nominal per
  category through the ``krippendorff`` package, κ for every pair of annotators, majority
  agreement, disagreements, per-annotator figures);
- ``total``: ``quality.selectors.batch_quality``, what the page calls (read + compute).

    .venv/bin/python bench/agreement.py                       # 100,000 labels, 5 rounds
    .venv/bin/python bench/agreement.py --labels 300000 --rounds 3

Prints the median and spread of each; the target is a total under 10 s for 100k labels.
``--reseed`` rebuilds the data; otherwise data of the right size is reused.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/pairwise_bench_agreement"
ANNOTATORS = 40
PER = 3

SEED_SQL = """
TRUNCATE annotation_label, annotation_assignment, annotation_comparison, annotation_response,
         annotation_prompt, annotation_batch RESTART IDENTITY CASCADE;
"""


STRENGTHS = ["negligibly_better_or_unsure", "slightly_better", "better", "significantly_better"]


def _label(c: int, k: int, annotator: int):
    """A hidden truth per comparison on the signed scale (-3..3); three in four labels give
    it, the rest a point from a hash of (comparison, slot)."""
    from annotation.models import Label

    point = (c * 29 + k * 11) % 7 - 3 if (c * 13 + k * 7) % 4 == 0 else (c * 7919) % 7 - 3
    side = "A" if point > 0 or (point == 0 and (c + k) % 2 == 0) else "B"
    return Label(
        comparison_id=c,
        annotator_id=annotator,
        preferred=side,
        strength=STRENGTHS[abs(point)],
        left="AB"[(c + k) % 2],
        time_spent_ms=3000 + (c * 37 + k) % 30000,
    )


def _setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def ensure_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg2

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def seed(labels: int, reseed: bool) -> int:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from annotation.models import Batch, Comparison, Label, Prompt, Response

    call_command("migrate", verbosity=0)
    batch = Batch.objects.filter(name="bench-agreement").first()
    if not reseed and batch and Label.objects.filter(comparison__batch=batch).count() == labels:
        print(f"reusing {labels:,} seeded labels")
        return batch.pk
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(SEED_SQL)
    # Users and the batch through the ORM, so columns other work adds get their defaults.
    User = get_user_model()
    User.objects.filter(username__startswith="bench-annotator-").delete()
    User.objects.bulk_create(User(username=f"bench-annotator-{i}") for i in range(ANNOTATORS))
    batch = Batch.objects.create(
        name="bench-agreement", iteration=1, labels_per_comparison=PER, status="open"
    )
    n = labels // PER
    Prompt.objects.bulk_create(
        (
            Prompt(turns=[{"role": "user", "content": f"Question {i}"}], content_hash=f"bench-{i}")
            for i in range(n)
        ),
        batch_size=5000,
    )
    prompts = list(Prompt.objects.order_by("id").values_list("id", flat=True))
    Response.objects.bulk_create(
        (Response(prompt_id=p, text=f"Answer {p}{side}") for p in prompts for side in "ab"),
        batch_size=5000,
    )
    responses = list(Response.objects.order_by("id").values_list("id", flat=True))
    Comparison.objects.bulk_create(
        (
            Comparison(
                batch=batch,
                prompt_id=p,
                response_a_id=responses[2 * i],
                response_b_id=responses[2 * i + 1],
                content_hash=f"bench-{i}",
                category="safety" if i % 4 == 0 else "helpfulness",
                source="bench",
            )
            for i, p in enumerate(prompts)
        ),
        batch_size=5000,
    )
    comparisons = Comparison.objects.filter(batch=batch).order_by("id").values_list("id", flat=True)
    rng = random.Random(0)  # three distinct annotators per comparison: every pair meets
    users = list(
        User.objects.filter(username__startswith="bench-annotator-").values_list("id", flat=True)
    )
    Label.objects.bulk_create(
        (
            _label(c, k, annotator)
            for c in comparisons
            for k, annotator in enumerate(rng.sample(users, PER))
        ),
        batch_size=5000,
    )
    print(f"seeded {Label.objects.count():,} labels in {time.perf_counter() - started:.1f} s")
    return batch.pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    args = parser.parse_args()
    ensure_database(args.database_url)
    _setup_django(args.database_url)
    from annotation.quality import selectors

    batch_id = seed(args.labels - args.labels % PER, args.reseed)
    times: dict[str, list[float]] = {"read": [], "compute": [], "total": []}
    for _ in range(args.rounds):
        started = time.perf_counter()
        rows = selectors.batch_label_rows(batch_id)
        times["read"].append(time.perf_counter() - started)
        started = time.perf_counter()
        selectors.batch_quality_from_rows(batch_id, rows)
        times["compute"].append(time.perf_counter() - started)
        started = time.perf_counter()
        quality = selectors.batch_quality(batch_id)
        times["total"].append(time.perf_counter() - started)
    for category, report in quality.by_category:
        kappas = sum(k.kappa is not None for k in report.kappas)
        print(
            f"{category}: {report.labels:,} labels, α signed {report.alpha_signed:.3f}, "
            f"α binary {report.alpha_binary:.3f}, {kappas} κ pairs, "
            f"{report.disagreements:,} disagreements"
        )
    print(f"{len(quality.annotators)} annotators; {args.rounds} rounds, seconds:")
    for phase, values in times.items():
        print(
            f"  {phase:8s} median {statistics.median(values):.2f}  "
            f"min {min(values):.2f}  max {max(values):.2f}"
        )


if __name__ == "__main__":
    main()
