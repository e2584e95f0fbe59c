"""Prompt sets as the ML code sees them: plain dataclasses read from JSON lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PromptExample:
    """A dialogue so far (ending with the user's turn) and whether it is safety-tagged."""

    turns: tuple[dict, ...]
    safety_tagged: bool = False

    def as_json(self) -> dict:
        return {"turns": list(self.turns), "safety_tagged": self.safety_tagged}


# (contexts, responses, safety_tagged) -> one scalar reward per response
RewardFn = Callable[[list[list[dict]], list[str], Sequence[bool]], list[float]]


def prompts_write(path: str | Path, prompts: Sequence[PromptExample]) -> None:
    with open(path, "w") as f:
        for p in prompts:
            f.write(json.dumps(p.as_json()) + "\n")


def prompts_read(path: str | Path) -> list[PromptExample]:
    prompts = []
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                prompts.append(
                    PromptExample(tuple(row["turns"]), bool(row.get("safety_tagged", False)))
                )
    if not prompts:
        raise ValueError(f"The prompt set {path} is empty.")
    return prompts
