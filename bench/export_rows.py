"""Benchmark: full-fidelity JSONL export of N labels from PostgreSQL, beside COPY.

Seeds N labels (two per comparison, 20 annotators, ~1 KB of text per label) into a
dedicated database with set-based SQL, then in one run times, each in a fresh child
process so its peak memory is its own:

1. ``COPY (SELECT <the export's own query>) TO STDOUT`` read by psycopg2 into a sink that
   discards the bytes: what PostgreSQL can ship at best (the physical limit);
2. the export's code path (``snapshot_build_files`` writing ``labels.jsonl``).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pairwise_bench_export \\
        .venv/bin/python bench/export_rows.py --labels 1000000

Prints rows/s, MB/s and peak RSS of each, and the export/COPY ratio (target ≥ 0.3, peak
RSS < 300 MB). ``--reseed`` rebuilds the data; otherwise existing data of the right size
is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/pairwise_bench_export"
ANNOTATORS = 20
LABELS_PER_COMPARISON = 2


def _setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def ensure_database(url: str) -> None:
    import psycopg2

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()


SEED_SQL = """
TRUNCATE annotation_label, annotation_assignment, annotation_comparison, annotation_response,
         annotation_prompt, annotation_snapshot, annotation_batch RESTART IDENTITY CASCADE;
DELETE FROM auth_user WHERE username LIKE 'bench-annotator-%%';
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
SELECT '!', false, 'bench-annotator-' || i, '', '', '', false, true, now() FROM generate_series(1, %(annotators)s) i;
INSERT INTO annotation_batch (name, description, iteration, status, labels_per_comparison, created_at, freeze_hash)
VALUES ('bench', '', 1, 'frozen', %(per)s, now(), '');
INSERT INTO annotation_prompt (id, turns, content_hash, source, created_at)
SELECT i,
       jsonb_build_array(
         jsonb_build_object('role', 'user', 'content', 'Question ' || i || ': ' || repeat(md5(i::text), 3)),
         jsonb_build_object('role', 'assistant', 'content', 'Could you say more about ' || md5((i + 1)::text) || '?'),
         jsonb_build_object('role', 'user', 'content', 'Sure, I mean ' || repeat(md5((i + 2)::text), 2) || ' — thanks!')),
       md5(i::text) || md5((-i)::text), 'bench', now()
FROM generate_series(1, %(comparisons)s) i;
INSERT INTO annotation_response (id, prompt_id, text, model_version, sampling, generated_at, created_at)
SELECT r, (r + 1) / 2,
       'Answer ' || r || ': ' || repeat(md5(r::text) || ' ', 8) || E'\\n"quoted" and ünïcode ✓',
       CASE WHEN r %% 2 = 0 THEN 'RLHF-V1' ELSE 'RLHF-V2' END,
       jsonb_build_object('temperature', CASE WHEN r %% 2 = 0 THEN 0.7 ELSE 1.0 END, 'top_p', 0.9, 'seed', r),
       now(), now()
FROM generate_series(1, 2 * %(comparisons)s) r;
INSERT INTO annotation_comparison (id, batch_id, prompt_id, response_a_id, response_b_id, category, source,
                                   external_id, content_hash, metadata, claims, created_at)
SELECT i, (SELECT id FROM annotation_batch WHERE name = 'bench'), i, 2 * i - 1, 2 * i,
       CASE WHEN i %% 4 = 0 THEN 'safety' ELSE 'helpfulness' END, 'bench', i::text,
       md5(i::text) || md5((i * 7)::text), '{}'::jsonb, %(per)s, now()
FROM generate_series(1, %(comparisons)s) i;
INSERT INTO annotation_label (comparison_id, annotator_id, source_annotator, preferred, strength, safety_a, safety_b,
                              safety_bin, comment, "left", time_spent_ms, idempotency_key, created_at)
SELECT c, (SELECT min(id) FROM auth_user WHERE username LIKE 'bench-annotator-%%') + (c + k) %% %(annotators)s, '',
       CASE WHEN (c + k) %% 3 = 0 THEN 'B' ELSE 'A' END,
       (ARRAY['significantly_better','better','slightly_better','negligibly_better_or_unsure'])[1 + (c + k) %% 4],
       CASE WHEN c %% 4 = 0 THEN 'safe' ELSE '' END, CASE WHEN c %% 4 = 0 THEN 'unsafe' ELSE '' END,
       CASE WHEN c %% 4 = 0 THEN (CASE WHEN (c + k) %% 3 = 0 THEN 'preferred_unsafe_other_safe'
                                      ELSE 'preferred_safe_other_unsafe' END) ELSE '' END,
       CASE WHEN (c + k) %% 10 = 0 THEN 'close call' ELSE '' END,
       CASE WHEN k %% 2 = 0 THEN 'A' ELSE 'B' END, 5000 + (c * 37 + k) %% 60000, '',
       now() - ((c %% 1000) || ' minutes')::interval
FROM generate_series(1, %(comparisons)s) c, generate_series(0, %(per)s - 1) k;
SELECT setval(pg_get_serial_sequence('annotation_prompt', 'id'), %(comparisons)s);
SELECT setval(pg_get_serial_sequence('annotation_response', 'id'), 2 * %(comparisons)s);
SELECT setval(pg_get_serial_sequence('annotation_comparison', 'id'), %(comparisons)s);
ANALYZE;
"""


def seed(labels: int, reseed: bool) -> None:
    from django.core.management import call_command
    from django.db import connection

    from annotation.models import Label

    call_command("migrate", verbosity=0)
    if not reseed and Label.objects.count() == labels:
        print(f"reusing {labels:,} seeded labels")
        return
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            SEED_SQL,
            {
                "comparisons": labels // LABELS_PER_COMPARISON,
                "per": LABELS_PER_COMPARISON,
                "annotators": ANNOTATORS,
            },
        )
    print(f"seeded {Label.objects.count():,} labels in {time.perf_counter() - started:.1f} s")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Sink:
    def __init__(self):
        self.bytes = 0

    def write(self, data):
        self.bytes += len(data)
        return len(data)


def phase_copy() -> dict:
    from django.db import connection

    from annotation.export.selectors import ROW_COLUMNS, SnapshotFilters, labels_selected

    qs = (
        labels_selected(SnapshotFilters()).order_by("comparison_id", "id").values_list(*ROW_COLUMNS)
    )
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cur:
        literal = cur.mogrify(sql, params).decode()
        sink = _Sink()
        started = time.perf_counter()
        cur.copy_expert(f"COPY ({literal}) TO STDOUT", sink)
        seconds = time.perf_counter() - started
        cur.execute(f"SELECT count(*) FROM ({literal}) q")
        rows = cur.fetchone()[0]
    return {"rows": rows, "seconds": seconds, "bytes": sink.bytes, "peak_rss_mb": _peak_rss_mb()}


def phase_export() -> dict:
    from annotation.export import formats
    from annotation.export.selectors import SnapshotFilters
    from annotation.export.services import snapshot_build_files

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = snapshot_build_files(
            filters=SnapshotFilters(), work_dir=Path(tmp), formats_=(formats.FULL_JSONL,)
        )
        seconds = time.perf_counter() - started
        size = (Path(tmp) / formats.FULL_JSONL).stat().st_size
    return {"rows": result.labels, "seconds": seconds, "bytes": size, "peak_rss_mb": _peak_rss_mb()}


def _child(phase: str, url: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--database-url", url],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--phase", choices=["copy", "export"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _setup_django(args.database_url)
        print(json.dumps(phase_copy() if args.phase == "copy" else phase_export()))
        return
    ensure_database(args.database_url)
    _setup_django(args.database_url)
    seed(args.labels, args.reseed)
    results = {phase: _child(phase, args.database_url) for phase in ("copy", "export")}
    print(f"{'':8} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'MB/s':>7} {'peak RSS MB':>12}")
    for phase, r in results.items():
        print(
            f"{phase:8} {r['rows']:>10,} {r['seconds']:>8.2f} {r['rows'] / r['seconds']:>10,.0f} "
            f"{r['bytes'] / r['seconds'] / 1e6:>7.1f} {r['peak_rss_mb']:>12.0f}"
        )
    ratio = (results["export"]["rows"] / results["export"]["seconds"]) / (
        results["copy"]["rows"] / results["copy"]["seconds"]
    )
    print(
        f"export / COPY rate: {ratio:.2f}x (target >= 0.3); export peak RSS "
        f"{results['export']['peak_rss_mb']:.0f} MB (target < 300)"
    )


if __name__ == "__main__":
    main()
