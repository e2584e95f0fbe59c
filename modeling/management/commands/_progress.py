"""Run a queued TrainingRun in this process with a tqdm bar fed from the run row."""

from __future__ import annotations

import threading
import time

from django.core.management.base import CommandError
from django.db import connection
from tqdm import tqdm

from modeling import jobs
from modeling.models import TrainingRun


def run_with_progress(run_id: int, stdout) -> TrainingRun:
    done = threading.Event()

    def watch():
        bar = tqdm(total=0, unit="step", dynamic_ncols=True)
        try:
            _follow(bar)
        finally:
            bar.close()
            connection.close()  # this thread's own; left open, it outlives the command

    def _follow(bar):
        while not done.wait(1.0):
            run = (
                TrainingRun.objects.filter(pk=run_id)
                .only("step", "total_steps", "loss", "accuracy", "phase")
                .first()
            )
            if run and run.total_steps:
                bar.total = run.total_steps
                bar.n = run.step
                post = {"phase": run.phase}
                if run.loss is not None:
                    post["loss"] = f"{run.loss:.4f}"
                if run.accuracy is not None:
                    post["acc"] = f"{run.accuracy:.3f}"
                bar.set_postfix(post)
                bar.refresh()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        jobs.training_run_execute(run_id=run_id)
    finally:
        done.set()
        thread.join(timeout=5)
    run = TrainingRun.objects.select_related("result").get(pk=run_id)
    stdout.write(f"run {run.pk} {run.status} in {time.monotonic() - started:.0f} s")
    return run


def run_to_success(run_id: int, stdout, *, failure: str = "") -> TrainingRun:
    """``run_with_progress``, and a ``CommandError`` (``failure`` + the run's error) unless
    the run succeeded."""
    run = run_with_progress(run_id, stdout)
    if run.status != run.Status.SUCCEEDED:
        raise CommandError(f"{failure}{run.error}")
    return run
