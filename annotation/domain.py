"""The vocabulary of preference data, as plain Python (no Django, no torch).

Shared by the web app, the importers and exporters, and the ML code, so that a strength
or a safety bin means the same thing everywhere. Names follow Llama 2 (§3.2.1).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Literal


class Strength(enum.StrEnum):
    """How much better the preferred response is (Llama 2's four-point scale)."""

    SIGNIFICANTLY_BETTER = "significantly_better"
    BETTER = "better"
    SLIGHTLY_BETTER = "slightly_better"
    NEGLIGIBLY_BETTER_OR_UNSURE = "negligibly_better_or_unsure"

    @property
    def label(self) -> str:
        return STRENGTH_LABELS[self]


STRENGTH_LABELS = {
    Strength.SIGNIFICANTLY_BETTER: "Significantly better",
    Strength.BETTER: "Better",
    Strength.SLIGHTLY_BETTER: "Slightly better",
    Strength.NEGLIGIBLY_BETTER_OR_UNSURE: "Negligibly better / Unsure",
}
# Strongest first, the order of Llama 2's Table 8 columns.
STRENGTH_ORDER = list(Strength)


def gold_label_correct(*, expected: str, min_strength: str, preferred: str, strength: str) -> bool:
    """Whether a label on a gold check gives the expected answer: the expected response
    (stored A/B terms), at least ``min_strength`` strongly when one is set (a blank,
    unrated strength then fails)."""
    if preferred != expected:
        return False
    if not min_strength:
        return True
    if not strength:
        return False
    return STRENGTH_ORDER.index(Strength(strength)) <= STRENGTH_ORDER.index(Strength(min_strength))


def labels_disagree(labels: list[tuple[str, str]]) -> bool:
    """Adaptive overlap's rule on a comparison's (preferred, strength) labels: they
    disagree when they pick different responses or any says Negligibly better / Unsure.
    (The queue runs the same rule in SQL, ``queue.statements.comparison_extend_sql``.)"""
    sides = {preferred for preferred, _ in labels}
    return len(sides) > 1 or any(s == Strength.NEGLIGIBLY_BETTER_OR_UNSURE for _, s in labels)


class MarginTable(enum.StrEnum):
    """Which margin m(strength) the reward model's ranking loss subtracts (Llama 2 Table 28)."""

    NONE = "none"
    SMALL = "small"
    LARGE = "large"


# Llama 2, Table 28: the margin m(r) inside the ranking loss, by rated strength. The one
# home of these numbers: training subtracts them, exports write them, imports read them back.
MARGINS: dict[MarginTable, dict[Strength, float]] = {
    MarginTable.NONE: {s: 0.0 for s in Strength},
    MarginTable.SMALL: {
        Strength.SIGNIFICANTLY_BETTER: 1.0,
        Strength.BETTER: 2 / 3,
        Strength.SLIGHTLY_BETTER: 1 / 3,
        Strength.NEGLIGIBLY_BETTER_OR_UNSURE: 0.0,
    },
    MarginTable.LARGE: {
        Strength.SIGNIFICANTLY_BETTER: 3.0,
        Strength.BETTER: 2.0,
        Strength.SLIGHTLY_BETTER: 1.0,
        Strength.NEGLIGIBLY_BETTER_OR_UNSURE: 0.0,
    },
}
DEFAULT_MARGIN_TABLE = MarginTable.SMALL


def margin_for(
    strength: Strength | str | None, *, table: MarginTable | str = DEFAULT_MARGIN_TABLE
) -> float:
    """m(strength) under ``table``; a blank or None strength (unrated binary data such as
    Anthropic HH) has no margin."""
    if not strength:
        return 0.0
    return MARGINS[MarginTable(table)][Strength(strength)]


def strength_for_margin(
    margin: float, *, table: MarginTable | str = DEFAULT_MARGIN_TABLE
) -> Strength | None:
    """The strength a non-zero margin of ``table`` stands for; None for 0 (read as unrated,
    since an unrated label and a negligible one both export 0). A margin that is in no
    row of the table raises ``ValueError``."""
    if margin == 0:
        return None
    for strength, value in MARGINS[MarginTable(table)].items():
        if value and round(value, 6) == round(float(margin), 6):
            return strength
    raise ValueError(f"{margin!r} is not a margin of the {MarginTable(table)} table")


class Category(enum.StrEnum):
    HELPFULNESS = "helpfulness"
    SAFETY = "safety"


class SafetyTag(enum.StrEnum):
    SAFE = "safe"
    UNSAFE = "unsafe"


class SafetyBin(enum.StrEnum):
    """Llama 2's safety bins for a safety comparison, from the two responses' tags."""

    PREFERRED_SAFE_OTHER_UNSAFE = "preferred_safe_other_unsafe"
    BOTH_SAFE = "both_safe"
    BOTH_UNSAFE = "both_unsafe"
    # Llama 2 drops these from safety RM training: the annotator preferred the unsafe one.
    PREFERRED_UNSAFE_OTHER_SAFE = "preferred_unsafe_other_safe"


class Choice(enum.StrEnum):
    """Which of a comparison's two responses, in its stored A/B terms."""

    A = "A"
    B = "B"

    @property
    def other(self) -> Choice:
        return Choice.B if self is Choice.A else Choice.A


class Role(enum.StrEnum):
    """A turn's speaker."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


def safety_bin(
    preferred: Choice | str, tag_a: SafetyTag | str, tag_b: SafetyTag | str
) -> SafetyBin:
    """The safety bin of a label from the preferred side and each response's safe/unsafe tag."""
    preferred = Choice(preferred)
    tags = {Choice.A: SafetyTag(tag_a), Choice.B: SafetyTag(tag_b)}
    chosen, other = tags[preferred], tags[preferred.other]
    if chosen is SafetyTag.SAFE and other is SafetyTag.UNSAFE:
        return SafetyBin.PREFERRED_SAFE_OTHER_UNSAFE
    if chosen is SafetyTag.SAFE:
        return SafetyBin.BOTH_SAFE
    if other is SafetyTag.UNSAFE:
        return SafetyBin.BOTH_UNSAFE
    return SafetyBin.PREFERRED_UNSAFE_OTHER_SAFE


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": str(self.role), "content": self.content}


@dataclass(frozen=True, slots=True)
class PreferencePair:
    """One labelled pair as the ML code sees it: context turns, chosen, rejected, strength."""

    context: tuple[Turn, ...]
    chosen: str
    rejected: str
    strength: Strength | Literal[""]  # "": unrated binary data (e.g. Anthropic HH), no margin
    category: Category
    safety_bin: SafetyBin | None = None
    source: str = ""


# --- text that a database can store -------------------------------------------------------

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why this text cannot be stored as it is, or None when it can.

    PostgreSQL's text type refuses the NUL character, and a lone UTF-16 surrogate (which
    JSON's ``\\ud800`` escapes can produce) has no UTF-8 encoding; either would fail deep in
    the database driver. Every entry point that takes text from a user or a file checks
    with this first and names the field or line in its own error.
    """
    if "\x00" in text:
        return f"contains a NUL character (\\u0000) at position {text.index(chr(0))}"
    found = _LONE_SURROGATE.search(text)
    if found is not None:
        return (
            f"contains a lone surrogate (\\u{ord(found.group()):04x}) at position "
            f"{found.start()}, which is not valid Unicode text"
        )
    return None


def text_problem_in(value: Any) -> tuple[str, str] | None:
    """The first string (or object key) in parsed JSON that the database cannot store
    (``text_problem``), as (its dotted field path, what is wrong), or None. Iterative:
    rows may be wide."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if (problem := text_problem(item)) is not None:
                return where, problem
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if (problem := text_problem(key)) is not None:
                    return where, f"has a key that {problem}"
                children.append((f"{where}.{key}" if where else key, child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{where}[{i}]", child) for i, child in enumerate(item)]))
    return None
