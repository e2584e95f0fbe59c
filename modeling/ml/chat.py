"""The one chat template of Pairwise, used the same way for annotation-time generation,
reward scoring, rejection-sampling fine-tuning and PPO.

A dialogue renders as::

    <|system|>\n{text}<|end|>\n        (optional)
    <|user|>\n{text}<|end|>\n
    <|assistant|>\n{text}<|end|>\n
    ...
    <|assistant|>\n                      ← generation prompt: the model writes the response,
                                           then <|end|> (END_OF_TURN) stops it.

The markers are special tokens of every tokenizer Pairwise makes (``SPECIAL_TOKENS``);
a tokenizer loaded from elsewhere (e.g. Llama 2) gets them added before fine-tuning.
Plain Python: no Django, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

END_OF_TURN = "<|end|>"
ROLE_MARKERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [*ROLE_MARKERS.values(), END_OF_TURN]


class TurnLike(Protocol):
    """A turn as an object (``annotation.domain.Turn``); a mapping with the same keys works too."""

    @property
    def role(self) -> object: ...

    @property
    def content(self) -> str: ...


Dialogue = Iterable[Mapping[str, object] | TurnLike]


def _role_content(turn: Mapping[str, object] | TurnLike) -> tuple[str, str]:
    if isinstance(turn, Mapping):
        return str(turn["role"]), str(turn["content"])
    return str(turn.role), str(turn.content)


def render_turn(role: str, content: str) -> str:
    if role not in ROLE_MARKERS:
        raise ValueError(f"unknown role {role!r}; expected one of {sorted(ROLE_MARKERS)}")
    return f"{ROLE_MARKERS[role]}\n{content}{END_OF_TURN}\n"


def render_prompt(turns: Dialogue) -> str:
    """The dialogue so far plus the assistant marker: what a policy continues from."""
    return "".join(render_turn(*_role_content(t)) for t in turns) + f"{ROLE_MARKERS['assistant']}\n"


def render_response(response: str) -> str:
    """The response as it follows ``render_prompt``, closed by the end-of-turn marker."""
    return f"{response}{END_OF_TURN}\n"


def render_dialogue(turns: Dialogue, response: str) -> str:
    """Prompt and response in one string: what a reward model scores."""
    return render_prompt(turns) + render_response(response)
