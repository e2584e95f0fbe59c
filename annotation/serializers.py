"""Serializers of the REST API: they translate JSON to service inputs and results to JSON.

Input serializers validate shape and vocabulary (so a 400 names the field), with the
limits of ``annotation.queue.rules``; the rules themselves (who may label what, batch
state, safety tags on safety tasks) are applied by the services.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from annotation.columns import INTEGER_MAX
from annotation.domain import Choice
from annotation.importers import KINDS
from annotation.models import (
    CATEGORY_CHOICES,
    CHOICE_CHOICES,
    SAFETY_BIN_CHOICES,
    SAFETY_TAG_CHOICES,
    STRENGTH_CHOICES,
    Batch,
    Comparison,
    Label,
    Response,
)
from annotation.queue import rules
from annotation.queue.rules import LabelInput, ShownLabelInput

SIDE_CHOICES = list(rules.DISPLAY_SIDES)
# The models' choice lists, so the OpenAPI schema names each vocabulary once.
CHOICES_AB = CHOICE_CHOICES
STRENGTHS = STRENGTH_CHOICES
SAFETY_TAGS = SAFETY_TAG_CHOICES
CATEGORIES = CATEGORY_CHOICES


# --- the annotator's task --------------------------------------------------------------


class TurnSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class ShownResponseSerializer(serializers.Serializer):
    text = serializers.CharField()


class ShownResponsesSerializer(serializers.Serializer):
    left = ShownResponseSerializer()
    right = ShownResponseSerializer()


class GuidelineSerializer(serializers.Serializer):
    category = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    version = serializers.IntegerField()


class CountsSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="Labels this annotator gave in open batches.")
    remaining = serializers.IntegerField(
        help_text="Open tasks this annotator may still take (counted up to a cap)."
    )
    remaining_capped = serializers.BooleanField(
        help_text="True when there are at least `remaining` tasks left."
    )
    skipped = serializers.IntegerField()


class BatchRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="batch_id")
    name = serializers.CharField(source="batch_name")


class TaskSerializer(serializers.Serializer):
    """A task in display order. Which stored response (A/B) is on the left is never sent."""

    assignment_id = serializers.IntegerField()
    comparison_id = serializers.IntegerField()
    batch = BatchRefSerializer(source="*")
    category = serializers.ChoiceField(choices=CATEGORIES)
    turns = TurnSerializer(many=True, help_text="The dialogue so far; the last turn is the user's.")
    responses = ShownResponsesSerializer(source="*")
    guideline = GuidelineSerializer(allow_null=True)
    counts = CountsSerializer()
    assigned_at = serializers.DateTimeField()


class CommentField(serializers.CharField):
    """A label's comment: its length, then ``rules.validate_comment_text`` in place of
    DRF's own NUL and surrogate checks, so that the serializer, the fast parser and the
    page answer a comment the database cannot store with one message."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        builtin = ProhibitNullCharactersValidator | ProhibitSurrogateCharactersValidator
        self.validators = [v for v in self.validators if not isinstance(v, builtin)]
        self.validators.append(rules.validate_comment_text)


class LabelInputSerializer(serializers.Serializer):
    """A judgement, in display terms (``preferred_side``, ``safety_left/right``) as the
    annotator saw it, or in the comparison's stored terms (``preferred``, ``safety_a/b``).
    Use one vocabulary per request."""

    preferred_side = serializers.ChoiceField(choices=SIDE_CHOICES, required=False)
    preferred = serializers.ChoiceField(choices=CHOICES_AB, required=False)
    strength = serializers.ChoiceField(choices=STRENGTHS)
    safety_left = serializers.ChoiceField(choices=SAFETY_TAGS, required=False)
    safety_right = serializers.ChoiceField(choices=SAFETY_TAGS, required=False)
    safety_a = serializers.ChoiceField(choices=SAFETY_TAGS, required=False)
    safety_b = serializers.ChoiceField(choices=SAFETY_TAGS, required=False)
    comment = CommentField(
        required=False, allow_blank=True, max_length=rules.COMMENT_MAX_CHARS, default=""
    )
    time_spent_ms = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=rules.TIME_SPENT_MAX_MS,
        default=None,
    )

    def validate(self, attrs):
        display = {k for k in ("preferred_side", "safety_left", "safety_right") if k in attrs}
        stored = {k for k in ("preferred", "safety_a", "safety_b") if k in attrs}
        if display and stored:
            raise serializers.ValidationError(
                {
                    sorted(stored)[0]: "Use display terms (preferred_side, safety_left/right) "
                    "or stored terms (preferred, safety_a/b), not both."
                }
            )
        if "preferred_side" not in attrs and "preferred" not in attrs:
            raise serializers.ValidationError(
                {"preferred_side": "Say which response is better: 'left' or 'right'."}
            )
        return attrs

    def to_label_input(self, *, idempotency_key: str) -> LabelInput | ShownLabelInput:
        """The service's input in the vocabulary the client used; the service translates
        display sides with the assignment's recorded order, under its row lock."""
        return service_label_input(self.validated_data, idempotency_key=idempotency_key)


NULL = "This field may not be null."
_TRAILING_ZEROS = re.compile(r"\.0*\s*$")
_DISPLAY_TERMS = ("preferred_side", "safety_left", "safety_right")
_STORED_TERMS = ("preferred", "safety_a", "safety_b")
_LABEL_CHOICES = {
    "preferred_side": frozenset(SIDE_CHOICES),
    "preferred": frozenset(value for value, _ in CHOICES_AB),
    "strength": frozenset(value for value, _ in STRENGTHS),
    **{name: frozenset(value for value, _ in SAFETY_TAGS) for name in _DISPLAY_TERMS[1:]},
    **{name: frozenset(value for value, _ in SAFETY_TAGS) for name in _STORED_TERMS[1:]},
}
_LABEL_FIELDS = frozenset(LabelInputSerializer._declared_fields)


def label_input_from_data(data, *, idempotency_key: str) -> LabelInput | ShownLabelInput:
    """``LabelInputSerializer(data=data)``'s validation and ``to_label_input``, without
    building a serializer: the same fields, rules and error keys (DRF's messages), at a
    fraction of the CPU (DRF deep-copies nine field objects per request; this runs on
    every label). ``tests/annotation/test_api.py`` holds the two to the same answers.
    Raises DRF's ``ValidationError`` with a list of messages per field.
    """
    if not isinstance(data, Mapping):
        raise serializers.ValidationError(
            {
                "non_field_errors": [
                    f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
                ]
            }
        )
    errors: dict[str, list[str]] = {}
    values: dict = {}
    for name, choices in _LABEL_CHOICES.items():
        if name not in data:
            continue
        value = data[name]
        if value is None:
            errors[name] = [NULL]
        elif str(value) not in choices:
            errors[name] = [f'"{value}" is not a valid choice.']
        else:
            values[name] = str(value)
    if "strength" not in data:
        errors["strength"] = ["This field is required."]
    comment = data.get("comment", "")
    if comment is None:
        errors["comment"] = [NULL]
    elif isinstance(comment, bool) or not isinstance(comment, str | int | float):
        errors["comment"] = ["Not a valid string."]
    else:
        comment = str(comment).strip()
        problems = []  # in the order of CommentField's validators
        if len(comment) > rules.COMMENT_MAX_CHARS:
            problems.append(
                f"Ensure this field has no more than {rules.COMMENT_MAX_CHARS} characters."
            )
        if (problem := rules.comment_text_problem(comment)) is not None:
            problems.append(problem)
        if problems:
            errors["comment"] = problems
    time_spent = data.get("time_spent_ms")
    if time_spent is not None:
        try:  # DRF's IntegerField: "12", 12 and 12.0 are 12; 12.5 and true are not integers
            time_spent = int(_TRAILING_ZEROS.sub("", str(time_spent)))
        except ValueError:
            errors["time_spent_ms"] = ["A valid integer is required."]
        else:
            if time_spent < 0:
                errors["time_spent_ms"] = ["Ensure this value is greater than or equal to 0."]
            elif time_spent > rules.TIME_SPENT_MAX_MS:
                errors["time_spent_ms"] = [
                    f"Ensure this value is less than or equal to {rules.TIME_SPENT_MAX_MS}."
                ]
    if errors:
        raise serializers.ValidationError(errors)
    display = [k for k in _DISPLAY_TERMS if k in values]
    stored = [k for k in _STORED_TERMS if k in values]
    if display and stored:
        raise serializers.ValidationError(
            {
                sorted(stored)[0]: [
                    "Use display terms (preferred_side, safety_left/right) "
                    "or stored terms (preferred, safety_a/b), not both."
                ]
            }
        )
    if "preferred_side" not in values and "preferred" not in values:
        raise serializers.ValidationError(
            {"preferred_side": ["Say which response is better: 'left' or 'right'."]}
        )
    values.update(comment=comment, time_spent_ms=time_spent)
    return service_label_input(values, idempotency_key=idempotency_key)


def service_label_input(values, *, idempotency_key: str) -> LabelInput | ShownLabelInput:
    """Validated label fields as the service's input, in the vocabulary the client used;
    the service translates display sides with the assignment's recorded order, under its
    row lock."""
    common = {
        "strength": values["strength"],
        "comment": values["comment"],
        "time_spent_ms": values["time_spent_ms"],
        "idempotency_key": idempotency_key,
    }
    if "preferred_side" in values:
        return ShownLabelInput(
            preferred_side=values["preferred_side"],
            safety_left=values.get("safety_left"),
            safety_right=values.get("safety_right"),
            **common,
        )
    return LabelInput(
        preferred=Choice(values["preferred"]),
        safety_a=values.get("safety_a"),
        safety_b=values.get("safety_b"),
        **common,
    )


class SkipInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class LabelSerializer(serializers.ModelSerializer):
    """A label in both vocabularies: stored (``preferred``, ``safety_a/b``) and as shown."""

    batch = serializers.IntegerField(source="comparison.batch_id", read_only=True)
    preferred_side = serializers.SerializerMethodField()
    # Blank on labels without them (no safety tags on helpfulness tasks, no side on imports):
    # declared here because ModelSerializer drops allow_blank from read-only fields.
    left = serializers.ChoiceField(choices=CHOICE_CHOICES, allow_blank=True, read_only=True)
    safety_a = serializers.ChoiceField(choices=SAFETY_TAGS, allow_blank=True, read_only=True)
    safety_b = serializers.ChoiceField(choices=SAFETY_TAGS, allow_blank=True, read_only=True)
    safety_bin = serializers.ChoiceField(
        choices=SAFETY_BIN_CHOICES, allow_blank=True, read_only=True
    )

    class Meta:
        model = Label
        fields = [
            "id",
            "comparison",
            "batch",
            "preferred",
            "preferred_side",
            "left",
            "strength",
            "safety_a",
            "safety_b",
            "safety_bin",
            "comment",
            "time_spent_ms",
            "created_at",
        ]
        read_only_fields = fields

    def get_preferred_side(self, label: Label) -> str | None:
        return preferred_side(label)


def preferred_side(label: Label) -> str | None:
    """The side the preferred response was shown on (None for imported labels)."""
    if not label.left:
        return None
    return "left" if label.preferred == label.left else "right"


# --- the hot path's JSON ---------------------------------------------------------------
# Every label renders one task and one label. DRF builds (deep-copies) every field of a
# serializer on each instantiation, which cost about a fifth of the cycle's Django CPU,
# so the cycle renders plain dicts. The serializers above stay the schema; tests check
# that both give the same JSON (tests/annotation/test_api.py).

_DATETIME = serializers.DateTimeField()


def task_data(task) -> dict:
    """``TaskSerializer(task).data`` as a plain dict (``task``: ``queue.reads.Task``)."""
    guideline = task.guideline
    counts = task.counts
    return {
        "assignment_id": task.assignment_id,
        "comparison_id": task.comparison_id,
        "batch": {"id": task.batch_id, "name": task.batch_name},
        "category": task.category,
        "turns": [{"role": str(t["role"]), "content": str(t["content"])} for t in task.turns],
        "responses": {"left": {"text": task.left.text}, "right": {"text": task.right.text}},
        "guideline": None
        if guideline is None
        else {
            "category": guideline.category,
            "title": guideline.title,
            "body": guideline.body,
            "version": guideline.version,
        },
        "counts": {
            "done": counts.done,
            "remaining": counts.remaining,
            "remaining_capped": counts.remaining_capped,
            "skipped": counts.skipped,
        },
        "assigned_at": _DATETIME.to_representation(task.assigned_at),
    }


def label_data(label: Label) -> dict:
    """``LabelSerializer(label).data`` as a plain dict."""
    return {
        "id": label.pk,
        "comparison": label.comparison_id,
        "batch": label.comparison.batch_id,
        "preferred": label.preferred,
        "preferred_side": preferred_side(label),
        "left": label.left,
        "strength": label.strength,
        "safety_a": label.safety_a,
        "safety_b": label.safety_b,
        "safety_bin": label.safety_bin,
        "comment": label.comment,
        "time_spent_ms": label.time_spent_ms,
        "created_at": _DATETIME.to_representation(label.created_at),
    }


class PauseNoticeSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField()
    batch = serializers.CharField()
    reason = serializers.CharField()


class PausedSerializer(serializers.Serializer):
    """Why the caller gets no task: the batches they are paused on."""

    detail = serializers.CharField()
    paused = PauseNoticeSerializer(many=True)


def paused_body(pauses) -> dict:
    """``PausedSerializer``'s body for ``gold.selectors.annotator_pauses_for``'s notices."""
    detail = " ".join(f"You are paused on batch {p.batch_name!r}: {p.reason}" for p in pauses)
    return {
        "detail": detail + (" An admin can resume you." if pauses else ""),
        "paused": [
            {"batch_id": p.batch_id, "batch": p.batch_name, "reason": p.reason} for p in pauses
        ],
    }


class LabelAndNextSerializer(serializers.Serializer):
    """The stored label and the caller's next task (null when the queue is empty; then
    ``paused`` lists the batches the caller is paused on, and why)."""

    label = LabelSerializer()
    next = TaskSerializer(allow_null=True)
    paused = PauseNoticeSerializer(many=True)


# --- batches and comparisons -----------------------------------------------------------


class BatchProgressSerializer(serializers.Serializer):
    comparisons = serializers.IntegerField(source="n_comparisons")
    labels_wanted = serializers.SerializerMethodField()
    labels = serializers.IntegerField(source="n_labels")
    in_progress = serializers.IntegerField(source="n_in_progress")
    skipped = serializers.IntegerField(source="n_skipped")
    percent = serializers.SerializerMethodField()

    def get_labels_wanted(self, batch) -> int:
        # The base overlap, plus what adaptive overlap asked for (gold checks apart).
        return batch.n_comparisons * batch.labels_per_comparison + batch.n_extra_labels

    def get_percent(self, batch) -> int:
        wanted = self.get_labels_wanted(batch)
        return min(100, int(100 * batch.n_labels / wanted)) if wanted else 0


class BatchSerializer(serializers.ModelSerializer):
    """A batch with its progress; expects ``selectors.batch_list_with_progress`` rows."""

    progress = BatchProgressSerializer(source="*", read_only=True)
    demonstrations = serializers.IntegerField(
        source="n_demonstrations",
        read_only=True,
        help_text="Ideal responses in the batch, written or imported (what SFT trains on).",
    )

    class Meta:
        model = Batch
        fields = [
            "id",
            "name",
            "description",
            "iteration",
            "status",
            "labels_per_comparison",
            "labels_per_comparison_max",
            "queue_order",
            "priorities_computed_at",
            "gold_rate",
            "gold_min_accuracy",
            "gold_min_items",
            "created_at",
            "opened_at",
            "closed_at",
            "frozen_at",
            "freeze_hash",
            "progress",
            "demonstrations",
        ]
        read_only_fields = fields


class BatchCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    iteration = serializers.IntegerField(
        required=False, min_value=0, max_value=INTEGER_MAX, default=0
    )
    labels_per_comparison = serializers.IntegerField(
        required=False, min_value=1, max_value=100, default=1
    )


class BatchTransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Batch.Status.choices)


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="JSONL, optionally gzip-compressed.")
    format = serializers.ChoiceField(choices=["hh", "native"])
    kind = serializers.ChoiceField(
        choices=list(KINDS),
        required=False,
        default="auto",
        help_text="What the file holds. auto: a line with 'response' (or 'messages') and no "
        "'chosen'/'response_a' is a demonstration, any other a comparison; demonstrations: "
        "every line is one (an hh file's chosen transcripts).",
    )
    category = serializers.ChoiceField(
        choices=CATEGORIES,
        required=False,
        help_text="Required for hh; native rows may carry their own.",
    )
    skip_invalid = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Import the valid rows and report the invalid ones.",
    )
    with_labels = serializers.BooleanField(
        required=False,
        default=True,
        help_text="Keep the labels that come with the data (HH's chosen side).",
    )


class ImportProblemSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    field = serializers.CharField(allow_blank=True)
    message = serializers.CharField()


class ImportReportSerializer(serializers.Serializer):
    filename = serializers.CharField()
    lines_read = serializers.IntegerField()
    created = serializers.IntegerField()
    labels_created = serializers.IntegerField()
    duplicates_existing = serializers.IntegerField()
    demonstrations_created = serializers.IntegerField()
    demonstrations_existing = serializers.IntegerField(
        help_text="Demonstrations already in the batch, not duplicated."
    )
    skipped_invalid = ImportProblemSerializer(many=True)
    more_skipped_invalid = serializers.IntegerField(
        help_text="Invalid rows skipped beyond those listed (PAIRWISE_IMPORT_MAX_PROBLEMS)."
    )
    summary = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """The API's error body (config/api_errors.py)."""

    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )


class ImportErrorSerializer(ErrorSerializer):
    """The API's error body (``detail``; ``errors`` when a form field is wrong) with, when
    the file's lines are, ``problems`` and the counts beyond them."""

    problems = ImportProblemSerializer(
        many=True,
        required=False,
        help_text="The first problems found (at most PAIRWISE_IMPORT_MAX_PROBLEMS), each "
        "naming its line (0: the file as a whole) and field.",
    )
    more_problems = serializers.IntegerField(
        required=False, help_text="Problems found beyond those listed."
    )
    lines_unchecked = serializers.IntegerField(
        required=False,
        help_text="Lines not checked: checking stops once the listed problems are full "
        "(unless skip_invalid).",
    )


class ResponseSerializer(serializers.ModelSerializer):
    class Meta:
        model = Response
        fields = ["id", "text", "model_version", "sampling", "generated_at", "generation_seconds"]
        read_only_fields = fields


class ComparisonSerializer(serializers.ModelSerializer):
    turns = TurnSerializer(source="prompt.turns", many=True, read_only=True)
    response_a = ResponseSerializer(read_only=True)
    response_b = ResponseSerializer(read_only=True)
    n_labels = serializers.IntegerField(read_only=True)

    class Meta:
        model = Comparison
        fields = [
            "id",
            "batch",
            "category",
            "source",
            "external_id",
            "turns",
            "response_a",
            "response_b",
            "n_labels",
            "claims",
            "metadata",
            "created_at",
        ]
        read_only_fields = fields
