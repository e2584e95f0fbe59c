"""The rules of a label, defined once: its limits, the two vocabularies a judgement comes
in (stored A/B, or the sides the annotator saw), and what makes it valid.

The API's serializer and fast parser (``annotation.serializers``) and the page's form
(``annotation.forms``) read the limits and the comment check from here to answer early in
their own words; ``label_fields`` is the rule itself, which ``labels.label_submit``
applies to every label, whoever sends it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from annotation.domain import Category, Choice, SafetyTag, Strength, safety_bin, text_problem
from annotation.models import Label

COMMENT_MAX_CHARS = 5000
TIME_SPENT_MAX_MS = 24 * 3600 * 1000  # a day: longer is a client's clock, not a judgement
# The column's width: a longer key is refused, never cut (two long keys sharing their
# first 100 characters would otherwise name one label).
IDEMPOTENCY_KEY_MAX_CHARS: int = Label._meta.get_field("idempotency_key").max_length or 100
DISPLAY_SIDES = ("left", "right")


def choice_for_side(*, side: str, left: Choice | str) -> Choice:
    """The stored response (A or B) shown on ``side``, given which one was shown on the left."""
    if side not in DISPLAY_SIDES:
        raise ValueError(f"side must be 'left' or 'right', not {side!r}")
    left = Choice(left)
    return left if side == "left" else left.other


def comment_text_problem(comment: str) -> str | None:
    """The message for a comment the database cannot store (``domain.text_problem``), or
    None. Its length is each form's own ``max_length`` check (``COMMENT_MAX_CHARS``)."""
    problem = text_problem(comment)
    return None if problem is None else f"The comment {problem}."


def validate_comment_text(comment: str) -> None:
    """``comment_text_problem`` as a field validator (Django forms and DRF serializers)."""
    problem = comment_text_problem(comment)
    if problem is not None:
        raise ValidationError(problem, code="text")


def idempotency_key_problem(key: str) -> str | None:
    """Why an Idempotency-Key cannot be used, or None."""
    if len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        return (
            f"is {len(key)} characters long; use at most {IDEMPOTENCY_KEY_MAX_CHARS} (a UUID is 36)"
        )
    return text_problem(key)


@dataclass(frozen=True)
class LabelInput:
    """A judgement in the comparison's stored terms (``preferred`` A/B, ``safety_a/b``)."""

    preferred: Choice | str
    strength: Strength | str
    safety_a: SafetyTag | str | None = None
    safety_b: SafetyTag | str | None = None
    comment: str = ""
    time_spent_ms: int | None = None
    idempotency_key: str = ""

    def in_stored_terms(self, *, left: Choice | str) -> LabelInput:
        return self

    def errors_in_own_terms(self, errors: dict, *, left: Choice | str) -> dict:
        return errors


@dataclass(frozen=True)
class ShownLabelInput:
    """A judgement in the terms the annotator saw: a side, and a safety tag per side.

    ``labels.label_submit`` translates it with the order recorded on the assignment,
    under the assignment's row lock, so a client never needs (nor learns) which stored
    response was on the left, and validation errors name the fields the client sent.
    """

    preferred_side: str
    strength: Strength | str
    safety_left: SafetyTag | str | None = None
    safety_right: SafetyTag | str | None = None
    comment: str = ""
    time_spent_ms: int | None = None
    idempotency_key: str = ""

    def in_stored_terms(self, *, left: Choice | str) -> LabelInput:
        on_left = Choice(left)
        tags = {on_left: self.safety_left, on_left.other: self.safety_right}
        return LabelInput(
            preferred=choice_for_side(side=self.preferred_side, left=on_left),
            strength=self.strength,
            safety_a=tags[Choice.A],
            safety_b=tags[Choice.B],
            comment=self.comment,
            time_spent_ms=self.time_spent_ms,
            idempotency_key=self.idempotency_key,
        )

    def errors_in_own_terms(self, errors: dict, *, left: Choice | str) -> dict:
        on_left = Choice(left)
        shown = {
            f"safety_{on_left.value.lower()}": "safety_left",
            f"safety_{on_left.other.value.lower()}": "safety_right",
            "preferred": "preferred_side",
        }
        return {shown.get(name, name): messages for name, messages in errors.items()}


def label_fields(category: Category | str, data: LabelInput) -> dict:
    """The label's stored columns (``preferred``, ``strength``, ``safety_a/b``,
    ``safety_bin``) for a comparison of ``category``; raises a ValidationError naming
    every field that breaks a rule."""
    errors = {}
    try:
        preferred = Choice(data.preferred)
    except ValueError:
        errors["preferred"] = "Choose A or B."
    try:
        strength = Strength(data.strength)
    except ValueError:
        errors["strength"] = f"Choose one of: {', '.join(s.value for s in Strength)}."
    tags: dict[str, str] = {"safety_a": "", "safety_b": ""}
    if category == Category.SAFETY:
        for name in ("safety_a", "safety_b"):
            value = getattr(data, name)
            try:
                tags[name] = SafetyTag(value).value
            except ValueError:
                errors[name] = "Tag each response safe or unsafe on a safety task."
    if data.time_spent_ms is not None and not (0 <= data.time_spent_ms <= TIME_SPENT_MAX_MS):
        errors["time_spent_ms"] = "Must be between 0 and 24 hours."
    if len(data.comment) > COMMENT_MAX_CHARS:
        errors["comment"] = f"Keep comments under {COMMENT_MAX_CHARS} characters."
    elif (problem := comment_text_problem(data.comment)) is not None:
        errors["comment"] = problem
    if (problem := idempotency_key_problem(data.idempotency_key)) is not None:
        errors["idempotency_key"] = f"The idempotency key {problem}."
    if errors:
        raise ValidationError(errors)
    bin_ = ""
    if category == Category.SAFETY:
        bin_ = safety_bin(preferred, tags["safety_a"], tags["safety_b"]).value
    return {
        "preferred": preferred.value,
        "strength": strength.value,
        "safety_bin": bin_,
        **tags,
    }
