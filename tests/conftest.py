"""Shared fixtures: eager Celery by default, a real worker on request, users per role."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

import pytest
from django.conf import settings
from kombu import pools as kombu_pools

from config.celery import app as celery_app

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    # Tests that read ../shared/data run wherever it exists (always in CI); elsewhere they
    # say plainly why they did not run.
    if not Path(settings.SHARED_DATA_DIR).exists():
        skip = pytest.mark.skip(
            reason=f"shared data not found at {settings.SHARED_DATA_DIR} (PAIRWISE_SHARED_DATA)"
        )
        for item in items:
            if "shared_data" in item.keywords:
                item.add_marker(skip)
    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        skip = pytest.mark.skip(reason="needs DATABASE_URL=postgres://... (run by scripts/test.sh)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # PBKDF2's deliberate slowness is for attackers, not for the hundreds of test users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Rate limits count sign-in attempts in the cache: each test starts from zero.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _celery_eager(request):
    """Tasks run inline unless a test starts a real worker."""
    if "celery_worker" in request.keywords:
        yield
        return
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def shared_data() -> Path:
    return Path(settings.SHARED_DATA_DIR)


@pytest.fixture
def annotator(db):
    from tests.factories import UserFactory

    return UserFactory(username="ann", role="annotator")


@pytest.fixture
def researcher(db):
    from tests.factories import UserFactory

    return UserFactory(username="res", role="researcher")


@pytest.fixture
def admin_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="boss", role="admin")


def reset_celery_caches() -> None:
    """Forget Celery's cached broker pools, router and queues.

    Celery caches them on first use (an eager ``.delay`` is one); after the worker fixture
    changes the default queue and routes, cached objects would still send the old way.
    """
    kombu_pools.reset()
    celery_app._pool = None
    amqp = celery_app.amqp
    amqp._producer_pool = None
    amqp._rtable = None
    for cached in ("router", "queues", "default_queue"):
        amqp.__dict__.pop(cached, None)


def _worker_database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if "sqlite" in s["ENGINE"]:
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    return f"postgres://{user}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


class CeleryWorkers:
    """Real ``celery worker`` processes on one private queue, using the test database.

    ``start()`` starts one and waits until it is ready; ``kill(proc)`` ends it with SIGKILL,
    as a crash or the OOM killer would (no warm shutdown, no acknowledgement).
    """

    def __init__(self, queue: str, env: dict[str, str], log_dir: Path):
        self.queue, self.env, self.log_dir = queue, env, log_dir
        self.procs: list[tuple[subprocess.Popen, IO[str]]] = []

    def start(self, **env: str) -> subprocess.Popen:
        log = open(self.log_dir / f"worker-{len(self.procs)}.log", "w+")  # noqa: SIM115 - closed in stop_all
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-P",
                "solo",
                "-Q",
                self.queue,
                "-n",
                f"worker{len(self.procs)}@%h",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "INFO",
            ],
            cwd=REPO,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append((proc, log))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log.seek(0)
            if "ready." in log.read():
                return proc
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"celery worker exited early:\n{log.read()}")
            time.sleep(0.2)
        raise RuntimeError("celery worker did not become ready in 60 s")

    def kill(self, proc: subprocess.Popen) -> None:
        proc.kill()
        proc.wait(timeout=20)

    def stop_all(self) -> None:
        for proc, log in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.seek(0)
            print(log.read()[-4000:])
            log.close()


@pytest.fixture
def celery_workers(transactional_db, tmp_path):
    """Start and kill real workers (``CeleryWorkers``) on a private queue.

    Broker: the configured one (Redis in CI, else the filesystem broker). The workers and
    the test process share it; a queue of its own keeps other workers (a running demo)
    from taking the test's tasks. The test process sends there.
    """
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": _worker_database_url(),
        "PAIRWISE_QUEUE": queue,
        "PAIRWISE_ML_QUEUE": queue,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PYTHONUNBUFFERED": "1",
    }
    celery_app.conf.task_always_eager = False
    old_queue, old_routes = celery_app.conf.task_default_queue, celery_app.conf.task_routes
    celery_app.conf.task_default_queue = queue
    celery_app.conf.task_routes = {"*": {"queue": queue}}
    reset_celery_caches()
    workers = CeleryWorkers(queue, env, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()
        celery_app.conf.task_default_queue, celery_app.conf.task_routes = old_queue, old_routes
        reset_celery_caches()


@pytest.fixture
def celery_worker(celery_workers):
    """One real ``celery worker`` process (see ``celery_workers``); yields its queue name."""
    celery_workers.start()
    return celery_workers.queue


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    """Poll ``predicate`` until truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s")
