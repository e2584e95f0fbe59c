"""Benchmark: what one upload of a large file of invalid lines costs the web worker.

Builds a file of ``--mb`` MB of invalid lines (``{x}``, 4 bytes each: malformed JSON) and,
each in a fresh child process so that its peak memory is its own, sends it

- ``page``: to the batch page's import form (``POST /batches/<id>/import/``),
- ``api``: to the API (``POST /api/v1/batches/<id>/import/``),
- ``service``: straight to ``services.comparisons_import`` (no HTTP), reading a file on disk,
- ``skip``: the same with ``skip_invalid=True`` (a partial import checks every line),

through Django's test client (the whole middleware, view and template stack, in process).
Prints, per target: the status, the size of the answer, the wall time of the request and
the peak resident memory of the process against its memory just before the request (the
upload body is already in memory then). Nothing may be written: it checks that the batch
is still empty.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pw_imports \\
        .venv/bin/python bench/import_bad_file.py --mb 10

Uses the configured database (migrated); it creates a user ``bench-import`` and one draft
batch per target, and deletes the batches afterwards.
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

REPO = Path(__file__).resolve().parent.parent
BAD_LINE = b"{x}\n"
TARGETS = ("page", "api", "service", "skip")


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_one(target: str, mb: float) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    import gc

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
    from django.test.utils import setup_test_environment

    from annotation import services
    from annotation.importers import ImportFileError
    from annotation.models import Comparison

    setup_test_environment()
    user, _ = get_user_model().objects.get_or_create(
        username="bench-import", defaults={"is_staff": True, "is_superuser": True}
    )
    batch = services.batch_create(name=f"bench-import-{target}-{time.time_ns()}")
    data = BAD_LINE * int(mb * 1e6 / len(BAD_LINE))
    try:
        if target in ("service", "skip"):
            with tempfile.NamedTemporaryFile(suffix=".jsonl") as fh:
                fh.write(data)
                fh.flush()
                del data
                gc.collect()
                before = _rss_mb()
                started = time.perf_counter()
                with open(fh.name, "rb") as stream:
                    try:
                        services.comparisons_import(
                            batch=batch,
                            stream=stream,
                            fmt="native",
                            skip_invalid=target == "skip",
                        )
                        status, body = "imported", ""
                    except ImportFileError as exc:
                        status, body = "ImportFileError", str(exc)
                seconds = time.perf_counter() - started
        else:
            client = Client()
            client.force_login(user)
            fmt_field, url = (
                ("fmt", f"/batches/{batch.pk}/import/")
                if target == "page"
                else ("format", f"/api/v1/batches/{batch.pk}/import/")
            )
            from django.core.files.uploadedfile import SimpleUploadedFile

            upload = SimpleUploadedFile("bad.jsonl", data)
            payload = encode_multipart(BOUNDARY, {"file": upload, fmt_field: "native"})
            del data, upload
            gc.collect()
            before = _rss_mb()
            started = time.perf_counter()
            # A copy of the content type: the client re-encodes only for MULTIPART_CONTENT itself.
            content_type = "".join(MULTIPART_CONTENT)
            response = client.post(url, data=payload, content_type=content_type)
            seconds = time.perf_counter() - started
            status, body = response.status_code, response.content.decode(errors="replace")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        written = Comparison.objects.filter(batch=batch).count()
    finally:
        batch.delete()
    return {
        "target": target,
        "mb": mb,
        "status": status,
        "answer_bytes": len(body.encode()),
        "seconds": round(seconds, 2),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(peak),
        "grew_mb": round(peak - before),
        "comparisons_written": written,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=10.0, help="size of the invalid file (MB)")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--one", choices=TARGETS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.mb)))
        return
    for target in args.targets.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--one", target, "--mb", str(args.mb)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if out.returncode != 0:
            sys.exit(f"{target} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{target:8} status {result['status']}, answer {result['answer_bytes'] / 1e6:.2f} MB, "
            f"{result['seconds']:.2f} s, RSS {result['rss_before_mb']} -> peak "
            f"{result['peak_rss_mb']} MB (+{result['grew_mb']}), "
            f"written {result['comparisons_written']}"
        )


if __name__ == "__main__":
    main()
