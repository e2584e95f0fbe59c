"""Load benchmark of the annotator cycle through the REST API, next to a bare Django view.

Serves Pairwise with gunicorn (``config.wsgi``, production settings plus the baseline
view, see ``bench/settings.py``) on a dedicated PostgreSQL database, seeds annotators
with API tokens and an open batch of comparisons, then drives N concurrent annotators
through the real API with token auth for a fixed duration. Modes (``--modes``):

- ``cycle``: the steady state of a client, one request per label:
  POST /api/v1/tasks/{id}/label-and-next/ answers with the next task
  (GET /api/v1/tasks/next/ fetches only the first one);
- ``cycle2``: GET /api/v1/tasks/next/ then POST /api/v1/tasks/{id}/label/, two requests;
- ``bare``: a bare Django view doing one indexed read and one insert
  (``bench/bare_view.py``) behind the same gunicorn and database.

Reports labels/s and p50/p99 latency of a label, requests/s and latency of the bare
view, CPU per operation (gunicorn, PostgreSQL, load generator), the ratios, and an
integrity check of the data written (no comparison labelled twice, claims consistent).

The load generator runs on the same machine as the server and the database and shares
its cores; its CPU time is reported too.

Run (from the repository root, PostgreSQL on 127.0.0.1:5432)::

    .venv/bin/python bench/annotator_cycle.py                    # 50 annotators, 30 s each
    .venv/bin/python bench/annotator_cycle.py --think-ms 5000     # paced annotators
    .venv/bin/python bench/annotator_cycle.py --modes bare,cycle,cycle2 --rounds 2
    .venv/bin/python bench/annotator_cycle.py --gold-rate 0.05 --overlap 2 --overlap-max 3

Quality control on the hot path (docs/annotation.md, "Quality control"): ``--gold-rate``
mixes gold checks (``--gold`` of them) into the batch, ``--overlap`` and ``--overlap-max``
turn adaptive overlap on. The simulated annotators answer at random, so the gold pause
rule is off (minimum accuracy 0): a paused client would stop labelling.

The database (``--db``, default pairwise_bench) is dropped and recreated each run.
Results are printed and written to bench/results/annotator_cycle-<time>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEEP_ALIVE_S = 30  # gunicorn's keep-alive; the load generator reopens idle connections
STRENGTHS = ["significantly_better", "better", "slightly_better", "negligibly_better_or_unsure"]


# --- database and seed data ----------------------------------------------------------------


def recreate_database(name: str, admin_url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def seed(
    *,
    annotators: int,
    comparisons: int,
    safety_share: float,
    overlap: int = 1,
    overlap_max: int | None = None,
    gold_rate: float = 0.0,
    gold: int = 200,
) -> dict:
    """Annotators with tokens, guidelines, and one open batch; written in bulk for speed.

    Comparisons are bulk-inserted rather than imported row by row: the benchmark measures
    the queue, not the importer, and needs tens of thousands of rows in seconds.
    """
    import hashlib

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from annotation import services
    from annotation.models import Batch, Comparison, Prompt, Response

    User = get_user_model()
    services.roles_ensure()
    users = User.objects.bulk_create(
        [User(username=f"bench-annotator-{i:03d}", password="!") for i in range(annotators)]
    )
    Group.objects.get(name="annotator").user_set.add(*users)
    tokens = Token.objects.bulk_create([Token(user=u, key=Token.generate_key()) for u in users])
    for category in ("helpfulness", "safety"):
        services.guideline_publish(
            category=category, title=f"{category} guidelines", body="Pick the better one."
        )

    batch = services.batch_create(name="bench", labels_per_comparison=overlap)
    rng = random.Random(0)
    chunk = 2000
    for start in range(0, comparisons, chunk):
        n = min(chunk, comparisons - start)
        prompts = Prompt.objects.bulk_create(
            [
                Prompt(
                    turns=[
                        {"role": "user", "content": f"Question {i}: how do I boil an egg?"},
                        {"role": "assistant", "content": "Soft or hard?"},
                        {"role": "user", "content": "Hard, and explain why it works."},
                    ],
                    content_hash=hashlib.sha256(f"bench-prompt-{i}".encode()).hexdigest(),
                    source="bench",
                )
                for i in range(start, start + n)
            ]
        )
        responses = Response.objects.bulk_create(
            [
                Response(
                    prompt=p, text=f"{side} answer to {p.pk}. " * 40, model_version=f"RLHF-V{v}"
                )
                for p in prompts
                for side, v in (("First", 1), ("Second", 0))
            ]
        )
        Comparison.objects.bulk_create(
            [
                Comparison(
                    batch=batch,
                    prompt=p,
                    response_a=responses[2 * k],
                    response_b=responses[2 * k + 1],
                    category="safety" if rng.random() < safety_share else "helpfulness",
                    source="bench",
                    content_hash=hashlib.sha256(f"bench-comparison-{p.pk}".encode()).hexdigest(),
                )
                for k, p in enumerate(prompts)
            ]
        )
    if gold_rate > 0 or overlap_max is not None:
        seed_quality(batch, gold_rate=gold_rate, gold=gold, overlap_max=overlap_max)
    services.batch_transition(batch=batch, to=Batch.Status.OPEN)
    with connection.cursor() as cur:
        # What autovacuum does within minutes of a bulk load (an insert-triggered vacuum
        # since PostgreSQL 13, and an analyze): statistics, and the visibility map that
        # lets index-only scans skip the heap. A batch is labelled over days, so the
        # steady state starts here, for the bare view and the cycle alike.
        cur.execute("VACUUM ANALYZE")
    first = (
        Comparison.objects.filter(batch=batch).order_by("id").values_list("id", flat=True).first()
    )
    return {"tokens": [t.key for t in tokens], "bare_comparison": first}


def seed_quality(batch, *, gold_rate: float, gold: int, overlap_max: int | None) -> None:
    """Gold comparisons (from a batch of their own, expected answer A) mixed into ``batch``
    at ``gold_rate``, and adaptive overlap up to ``overlap_max``."""
    import hashlib

    from annotation.gold import services as gold_services
    from annotation.models import Batch, Comparison, GoldComparison

    if gold_rate > 0:
        template = Comparison.objects.filter(batch=batch).order_by("id")
        source = Batch.objects.create(name="bench-gold")
        copies = Comparison.objects.bulk_create(
            [
                Comparison(
                    batch=source,
                    prompt_id=c.prompt_id,
                    response_a_id=c.response_a_id,
                    response_b_id=c.response_b_id,
                    category=c.category,
                    source="bench-gold",
                    content_hash=hashlib.sha256(f"bench-gold-{c.pk}".encode()).hexdigest(),
                )
                for c in template[:gold]
            ]
        )
        GoldComparison.objects.bulk_create(
            [GoldComparison(comparison=c, preferred="A") for c in copies]
        )
    gold_services.batch_quality_update(
        batch=batch,
        gold_rate=gold_rate,
        gold_min_accuracy=0.0,
        labels_per_comparison_max=overlap_max,
    )


def check_integrity() -> dict:
    """After the runs: no comparison labelled more than it wanted (its overlap plus what
    adaptive overlap asked for; gold checks have no limit), no label without its
    assignment, every comparison's claims equal to its live assignments less its extra
    labels (nothing lost, nothing leaked), and the annotators' done counters summing to
    the labelled assignments."""
    from django.db.models import Count, F, Q, Sum

    from annotation.models import AnnotatorBatchCount, Assignment, Comparison, Label

    labels = Label.objects.exclude(annotator=None)
    live = Q(assignments__status__in=[Assignment.Status.ASSIGNED, Assignment.Status.LABELLED])
    return {
        "labels": labels.count(),
        "labelled_assignments": Assignment.objects.filter(
            status=Assignment.Status.LABELLED
        ).count(),
        "gold_labels": labels.filter(comparison__is_gold=True).count(),
        "extra_labels_asked": Comparison.objects.aggregate(n=Sum("extra_labels"))["n"] or 0,
        "comparisons_over_wanted_labels": Comparison.objects.filter(is_gold=False)
        .annotate(n=Count("labels"))
        .filter(n__gt=F("batch__labels_per_comparison") + F("extra_labels"))
        .count(),
        "comparisons_with_wrong_claims": Comparison.objects.annotate(
            live=Count("assignments", filter=live)
        )
        .exclude(claims=F("live") - F("extra_labels"))
        .count(),
        # The task screen's "done" counter (AnnotatorBatchCount) vs the assignments.
        "done_counter_total": AnnotatorBatchCount.objects.aggregate(n=Sum("done"))["n"] or 0,
    }


# --- the server ------------------------------------------------------------------------------


def start_gunicorn(env: dict, *, port: int, workers: int, threads: int) -> subprocess.Popen:
    cmd = [
        str(REPO / ".venv" / "bin" / "gunicorn"),
        "config.wsgi",
        f"--bind=127.0.0.1:{port}",
        f"--workers={workers}",
        "--worker-class=gthread",
        f"--threads={threads}",
        f"--keep-alive={KEEP_ALIVE_S}",
        "--backlog=2048",
        "--log-level=warning",
    ]
    server = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/labels/")
            if conn.getresponse().status == 401:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("gunicorn did not answer within 60 s")


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def process_tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of ``pid`` and its live children (gunicorn master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        p = pending.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def postgres_cpu_seconds(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``database`` (their process
    titles name it), by pid, so other databases on the same server do not count."""
    tick = os.sysconf("SC_CLK_TCK")
    by_pid = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().decode(errors="replace")
            if not title.startswith("postgres:") or f" {database} " not in title:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        by_pid[int(proc.name)] = (int(fields[11]) + int(fields[12])) / tick
    return by_pid


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots; backends that started in between count whole
    (Django reconnects every DATABASE_CONN_MAX_AGE seconds), ones that ended are lost."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# --- the load generator ----------------------------------------------------------------------


def _label_body(rng: random.Random, task: dict) -> bytes:
    label = {
        "preferred_side": rng.choice(("left", "right")),
        "strength": rng.choice(STRENGTHS),
    }
    if task["category"] == "safety":
        label["safety_left"] = rng.choice(("safe", "unsafe"))
        label["safety_right"] = rng.choice(("safe", "unsafe"))
    return json.dumps(label).encode()


def _annotator(mode, port, token, bare_comparison, start_at, measure_from, stop_at, think_s, out):
    """One simulated annotator on one keep-alive connection; appends (end, latency, ok).

    Modes: ``bare`` (the baseline view), ``cycle`` (the steady state: one POST
    .../label-and-next/ per label, GET /tasks/next/ only for the first task) and
    ``cycle2`` (GET /tasks/next/ then POST .../label/ per label, two requests).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    last_used = time.monotonic()
    auth = {"Authorization": f"Token {token}"}
    rng = random.Random(token)
    records = []
    task = None

    def connection():
        """The keep-alive connection, reopened after an idle spell the server would have
        ended (gunicorn --keep-alive=30): what an HTTP client's connection pool does. A
        long think time (paced runs) otherwise meets a closed socket."""
        nonlocal conn, last_used
        if time.monotonic() - last_used > KEEP_ALIVE_S - 5:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        last_used = time.monotonic()
        return conn

    def get_next():
        conn = connection()
        conn.request("GET", "/api/v1/tasks/next/", headers=auth)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, (json.loads(body) if resp.status == 200 else None)

    def post_label(url):
        conn = connection()
        conn.request(
            "POST",
            url,
            body=_label_body(rng, task),
            headers={
                **auth,
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        resp = conn.getresponse()
        return resp.status, resp.read()

    time.sleep(max(0.0, start_at - time.time()))
    try:
        if mode == "cycle":
            code, task = get_next()
            if code != 200:
                records.append((time.time(), 0.0, "empty" if code == 204 else f"next {code}"))
                out.extend(records)
                return
        while time.time() < stop_at:
            t0 = time.perf_counter()
            if mode == "bare":
                conn = connection()
                conn.request(
                    "POST", f"/api/bench/bare/?comparison={bare_comparison}", body=b"", headers=auth
                )
                resp = conn.getresponse()
                resp.read()
                ok, code = resp.status == 201, resp.status
            elif mode == "cycle":
                code, body = post_label(f"/api/v1/tasks/{task['assignment_id']}/label-and-next/")
                ok = code == 201
                if ok:
                    task = json.loads(body)["next"]
            else:
                code, task = get_next()
                if code == 204:
                    records.append((time.time(), 0.0, "empty"))
                    break
                if code != 200:
                    records.append((time.time(), time.perf_counter() - t0, f"next {code}"))
                    continue
                code, _ = post_label(f"/api/v1/tasks/{task['assignment_id']}/label/")
                ok = code == 201
            end = time.time()
            if end >= measure_from:
                records.append((end, time.perf_counter() - t0, True if ok else f"status {code}"))
            if mode == "cycle" and ok and task is None:
                records.append((time.time(), 0.0, "empty"))
                break
            if think_s:
                time.sleep(rng.expovariate(1 / think_s))
    except (OSError, http.client.HTTPException) as exc:
        records.append((time.time(), 0.0, repr(exc)))
    out.extend(records)


def _load_process(
    mode, port, tokens, bare_comparison, start_at, measure_from, stop_at, think_s, queue
):
    out: list = []
    threads = [
        threading.Thread(
            target=_annotator,
            args=(mode, port, t, bare_comparison, start_at, measure_from, stop_at, think_s, out),
        )
        for t in tokens
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = os.times()
    queue.put((out, usage.user + usage.system))


@dataclass
class Result:
    mode: str
    clients: int
    seconds: float
    ops: int
    ops_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    queue_ran_dry: bool
    server_cpu_ms_per_op: float
    postgres_cpu_ms_per_op: float
    loadgen_cpu_ms_per_op: float


def drive(
    mode, *, port, tokens, bare_comparison, duration, warmup, think_ms, procs, server, database
) -> Result:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 1.0
    measure_from, stop_at = start_at + warmup, start_at + warmup + duration
    groups = [tokens[i::procs] for i in range(procs)]
    workers = [
        ctx.Process(
            target=_load_process,
            args=(
                mode,
                port,
                g,
                bare_comparison,
                start_at,
                measure_from,
                stop_at,
                think_ms / 1000,
                queue,
            ),
        )
        for g in groups
        if g
    ]
    for w in workers:
        w.start()
    time.sleep(max(0.0, measure_from - time.time()))
    cpu0, pg0 = process_tree_cpu_seconds(server.pid), postgres_cpu_seconds(database)
    time.sleep(max(0.0, stop_at - time.time()))
    cpu1, pg1 = process_tree_cpu_seconds(server.pid), postgres_cpu_seconds(database)
    records, loadgen_cpu = [], 0.0
    for _ in workers:
        out, cpu = queue.get()
        records += out
        loadgen_cpu += cpu
    for w in workers:
        w.join()
    good = sorted(lat for end, lat, ok in records if ok is True and measure_from <= end <= stop_at)
    errors = [ok for _, _, ok in records if ok is not True and ok != "empty"]
    dry = any(ok == "empty" for _, _, ok in records)
    seconds = duration
    if dry:  # the queue emptied: measure up to the last completed cycle
        seconds = max(end for end, _, ok in records if ok is True) - measure_from
    n = len(good)

    def pct(q: float) -> float:
        return 1000 * good[min(n - 1, int(q * n))] if n else float("nan")

    return Result(
        mode=mode,
        clients=len(tokens),
        seconds=round(seconds, 2),
        ops=n,
        ops_per_s=round(n / seconds, 1),
        p50_ms=round(1000 * statistics.median(good), 1) if n else float("nan"),
        p90_ms=round(pct(0.90), 1),
        p99_ms=round(pct(0.99), 1),
        max_ms=round(1000 * good[-1], 1) if n else float("nan"),
        errors=len(errors),
        queue_ran_dry=dry,
        server_cpu_ms_per_op=round(1000 * (cpu1 - cpu0) / max(n, 1), 2),
        postgres_cpu_ms_per_op=round(1000 * cpu_between(pg0, pg1) / max(n, 1), 2),
        # Whole run (warm-up included) over measured ops: an upper bound.
        loadgen_cpu_ms_per_op=round(1000 * loadgen_cpu / max(n, 1), 2),
    )


def _combine(runs: list[Result]) -> Result:
    """Several runs of one mode as one: summed ops over summed time; latency percentiles
    and CPU per op as the median of the runs (the raw runs are kept in the JSON)."""
    if len(runs) == 1:
        return runs[0]
    seconds = sum(r.seconds for r in runs)
    ops = sum(r.ops for r in runs)

    def med(name: str) -> float:
        return round(statistics.median(getattr(r, name) for r in runs), 2)

    return Result(
        mode=runs[0].mode,
        clients=runs[0].clients,
        seconds=round(seconds, 2),
        ops=ops,
        ops_per_s=round(ops / seconds, 1),
        p50_ms=med("p50_ms"),
        p90_ms=med("p90_ms"),
        p99_ms=med("p99_ms"),
        max_ms=max(r.max_ms for r in runs),
        errors=sum(r.errors for r in runs),
        queue_ran_dry=any(r.queue_ran_dry for r in runs),
        server_cpu_ms_per_op=med("server_cpu_ms_per_op"),
        postgres_cpu_ms_per_op=med("postgres_cpu_ms_per_op"),
        loadgen_cpu_ms_per_op=med("loadgen_cpu_ms_per_op"),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--annotators", type=int, default=50, help="concurrent annotators (threads)"
    )
    parser.add_argument("--duration", type=float, default=30, help="measured seconds per run")
    parser.add_argument(
        "--warmup", type=float, default=5, help="unmeasured seconds before each run"
    )
    parser.add_argument(
        "--think-ms", type=float, default=0, help="mean pause between an annotator's cycles"
    )
    parser.add_argument(
        "--comparisons", type=int, default=40_000, help="comparisons in the open batch"
    )
    parser.add_argument(
        "--safety-share", type=float, default=0.2, help="share of safety comparisons"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--load-procs", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--modes",
        default="bare,cycle",
        help="comma-separated, run in this order each round: bare (the baseline view), "
        "cycle (POST label-and-next, one request per label), cycle2 (GET next + POST label)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate bare and cycle runs this many times (evens out drift)",
    )
    parser.add_argument(
        "--gold-rate", type=float, default=0.0, help="share of tasks that are gold checks"
    )
    parser.add_argument("--gold", type=int, default=200, help="gold comparisons to mix in")
    parser.add_argument("--overlap", type=int, default=1, help="labels per comparison")
    parser.add_argument(
        "--overlap-max",
        type=int,
        default=None,
        help="adaptive overlap: up to this many labels while they disagree (default: off)",
    )
    parser.add_argument("--db", default="pairwise_bench")
    parser.add_argument(
        "--pg", default="postgres://postgres@127.0.0.1:5432", help="server URL, no database"
    )
    args = parser.parse_args()

    database_url = f"{args.pg}/{args.db}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain http on localhost
        "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }
    print(
        f"database {database_url}: recreating, migrating, seeding {args.comparisons} comparisons",
        flush=True,
    )
    recreate_database(args.db, f"{args.pg}/postgres")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True
    )
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connections

    seeded = seed(
        annotators=args.annotators,
        comparisons=args.comparisons,
        safety_share=args.safety_share,
        overlap=args.overlap,
        overlap_max=args.overlap_max,
        gold_rate=args.gold_rate,
        gold=args.gold,
    )
    connections.close_all()  # before forking the load generator

    port = free_port()
    print(
        f"gunicorn: {args.workers} workers x {args.threads} threads (gthread) on :{port}",
        flush=True,
    )
    server = start_gunicorn(env, port=port, workers=args.workers, threads=args.threads)
    results = []
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(modes) - {"bare", "cycle", "cycle2"}:
        parser.error(f"unknown modes: {sorted(unknown)}")
    try:
        for mode in modes * args.rounds:
            print(
                f"{mode}: {args.annotators} clients, {args.warmup:g} s warm-up + {args.duration:g} s",
                flush=True,
            )
            result = drive(
                mode,
                port=port,
                tokens=seeded["tokens"],
                bare_comparison=seeded["bare_comparison"],
                duration=args.duration,
                warmup=args.warmup,
                think_ms=args.think_ms,
                procs=args.load_procs,
                server=server,
                database=args.db,
            )
            print("  " + json.dumps(asdict(result)), flush=True)
            results.append(result)
    finally:
        stop(server)

    by_mode = {mode: _combine([r for r in results if r.mode == mode]) for mode in modes}
    summary = {
        "machine": f"{os.cpu_count()} cores (server, PostgreSQL and load generator share them)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": vars(args),
        "load_average_after": os.getloadavg(),
        "runs": [asdict(r) for r in results],
        "results": {mode: asdict(r) for mode, r in by_mode.items()},
    }
    summary["integrity"] = check_integrity()
    print("integrity: " + json.dumps(summary["integrity"]))
    cpu = {m: by_mode[m].server_cpu_ms_per_op + by_mode[m].postgres_cpu_ms_per_op for m in by_mode}
    for mode in ("cycle", "cycle2"):
        if "bare" not in by_mode or mode not in by_mode:
            continue
        ratio = by_mode[mode].ops_per_s / by_mode["bare"].ops_per_s
        summary[f"ratio_{mode}_labels_per_s_to_bare_requests_per_s"] = round(ratio, 3)
        summary[f"ratio_bare_cpu_to_{mode}_cpu"] = round(cpu["bare"] / cpu[mode], 3)
        print(
            f"{mode} {by_mode[mode].ops_per_s} labels/s (p50 {by_mode[mode].p50_ms} ms, "
            f"p99 {by_mode[mode].p99_ms} ms, CPU {cpu[mode]:.2f} ms/label) vs bare "
            f"{by_mode['bare'].ops_per_s} req/s (p50 {by_mode['bare'].p50_ms} ms, "
            f"p99 {by_mode['bare'].p99_ms} ms, CPU {cpu['bare']:.2f} ms/req): "
            f"throughput ratio {ratio:.2f}, CPU ratio {cpu['bare'] / cpu[mode]:.2f}"
        )
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"annotator_cycle-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"written to {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
