"""Resumable training state for the policy trainers (SFT, DPO, RRHF/PRO, GRPO/RLOO).
Django-free; torch only.

A trainer saves its state every ``every`` optimizer steps into ``folder`` (the stage's
work folder): the trainable parameters (with LoRA: the adapters only), the optimizer, the
step count, the random generators and whatever the trainer needs to continue exactly
(``extra``: plain values and tensors). A worker killed mid-stage leaves the last state
behind; the stage's rerun finds it, loads it and continues from that step, so a resumed
run ends with the same number of steps as an uninterrupted one.

    state = TrainState(work_dir / "state", every=config.checkpoint_every)
    start = state.restore(model, optimizer)      # 0, or the step it stopped at
    for step in range(start + 1, total + 1):
        ...
        on_step(stats)                             # report first, then save: a saved
        state.save_if_due(step, total, model, optimizer, extra={"order": order})
    state.clear()                                  # once the final policy is written

Report a step before saving the state at it: whoever keeps the reported steps (the stage
writes them when a state is saved) then has every step the state has run.

The file is written beside and renamed (``os.replace``), so a kill during a save leaves
the previous state whole; it is read with ``weights_only=True``, so a planted file cannot
run code.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "train_state.pt"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (all of them, or LoRA's adapters), on the CPU."""
    return {
        name: p.detach().to("cpu", copy=True)
        for name, p in model.named_parameters()
        if p.requires_grad
    }


class TrainState:
    """Where a trainer keeps its resumable state, and how often it writes it (0: never)."""

    def __init__(
        self,
        folder: str | Path | None,
        every: int = 0,
        *,
        on_save: Callable[[], None] | None = None,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.every = every
        self.on_save = on_save  # called after each save (the stage records its steps)
        self.extra: dict[str, Any] = {}  # what ``restore`` found besides the weights

    @property
    def path(self) -> Path | None:
        return self.folder / STATE_FILE if self.folder is not None else None

    def restore(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
    ) -> int:
        """Load a saved state into ``model`` (and ``optimizer``) if there is one; return the
        step it was saved at (0: none, start from the beginning). ``self.extra`` holds the
        trainer's own values."""
        path = self.path
        if path is None or not path.is_file():
            return 0
        state = torch.load(path, map_location="cpu", weights_only=True)
        params = dict(model.named_parameters())
        unknown = [name for name in state["model"] if name not in params]
        if unknown:
            raise ValueError(
                f"The saved training state {path} does not fit this model "
                f"(unknown parameter {unknown[0]}); remove it to start over."
            )
        with torch.no_grad():
            for name, value in state["model"].items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(_tuple_state(state["python_rng"]))
        self.extra = state.get("extra", {})
        return int(state["step"])

    def due(self, step: int, total: int) -> bool:
        return bool(
            self.folder is not None and self.every and step % self.every == 0 and step < total
        )

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        path = self.path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "step": step,
                "model": trainable_state(model),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "torch_rng": torch.get_rng_state(),
                "python_rng": _list_state(random.getstate()),
                "extra": extra or {},
            },
            tmp,
        )
        os.replace(tmp, path)
        if self.on_save is not None:
            self.on_save()

    def save_if_due(
        self,
        step: int,
        total: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bool:
        """Save when ``step`` is a multiple of ``every`` (not the last step: the finished
        policy is written instead). True when it saved."""
        if not self.due(step, total):
            return False
        self.save(step, model, optimizer, extra)
        return True

    def clear(self) -> None:
        """Remove the state once the trained policy is written."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _list_state(state: tuple) -> list:
    # weights_only loading accepts lists and ints, not arbitrary tuples of them
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _tuple_state(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
