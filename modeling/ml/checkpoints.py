"""Publishing a checkpoint folder atomically: readers see the old folder or the new one,
never half of either. Plain Python."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def partial_dir(final: str | Path) -> Path:
    """A fresh, empty sibling folder to write into before ``publish``."""
    final = Path(final)
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp


def publish(tmp: str | Path, final: str | Path) -> Path:
    """Move the finished ``tmp`` folder to ``final``, replacing an earlier attempt's output."""
    tmp, final = Path(tmp), Path(final)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final
