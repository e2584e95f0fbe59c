"""HTML forms of the annotation pages. They parse and check input; services do the work.

The label form speaks in screen positions ("left"/"right") and hands them on as they are:
the label service translates them with the order recorded on the assignment, under its
row lock, so a tampered or stale page can never swap the meaning of a choice. Its limits
come from ``annotation.queue.rules``.
"""

from __future__ import annotations

from django import forms
from django.core.validators import ProhibitNullCharactersValidator

from annotation.columns import INTEGER_MAX
from annotation.domain import STRENGTH_ORDER, Category, SafetyTag
from annotation.queue import rules

SIDES = [("left", "Response 1"), ("right", "Response 2")]
SAFETY_CHOICES = [(t.value, t.value.capitalize()) for t in SafetyTag]
SKIP_REASONS = [
    "I don't understand the language",
    "The prompt is broken or empty",
    "Both responses are identical",
    "It needs expertise I don't have",
    "Offensive content I'd rather not rate",
]


class CommentField(forms.CharField):
    """A label's comment: ``rules.validate_comment_text`` in place of Django's own NUL
    check, so the page and the API answer an unstorable comment with one message."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]
        self.validators.append(rules.validate_comment_text)


class LabelForm(forms.Form):
    """The page's judgement, as shown: a side, a strength, a safety tag per side. Whether
    a safety task has both tags is the label service's rule (``rules.label_fields``),
    checked once, under the assignment's lock."""

    choice = forms.ChoiceField(
        choices=SIDES, error_messages={"required": "Choose Response 1 or Response 2."}
    )
    strength = forms.ChoiceField(
        choices=[(s.value, s.label) for s in STRENGTH_ORDER],
        error_messages={"required": "Say how much better it is."},
    )
    safety_left = forms.ChoiceField(choices=SAFETY_CHOICES, required=False)
    safety_right = forms.ChoiceField(choices=SAFETY_CHOICES, required=False)
    comment = CommentField(
        required=False, max_length=rules.COMMENT_MAX_CHARS, widget=forms.Textarea
    )
    time_spent_ms = forms.IntegerField(
        required=False, min_value=0, max_value=rules.TIME_SPENT_MAX_MS
    )
    idempotency_key = forms.CharField(required=False, max_length=rules.IDEMPOTENCY_KEY_MAX_CHARS)

    def label_input(self) -> rules.ShownLabelInput:
        """The label as shown, for ``labels.label_submit_and_next`` to translate."""
        data = self.cleaned_data
        return rules.ShownLabelInput(
            preferred_side=data["choice"],
            strength=data["strength"],
            safety_left=data.get("safety_left") or None,
            safety_right=data.get("safety_right") or None,
            comment=data.get("comment") or "",
            time_spent_ms=data.get("time_spent_ms"),
            idempotency_key=data.get("idempotency_key") or "",
        )


class SkipForm(forms.Form):
    reason = forms.CharField(
        max_length=500, error_messages={"required": "Say why you are skipping this task."}
    )


class BatchCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    iteration = forms.IntegerField(
        min_value=0,
        max_value=INTEGER_MAX,
        initial=0,
        help_text="The RLHF iteration (RLHF-V{N}) that sampled it.",
    )
    labels_per_comparison = forms.IntegerField(
        min_value=1, max_value=20, initial=1, help_text="How many annotators label each comparison."
    )


class ImportForm(forms.Form):
    FORMATS = [("native", "Pairwise native JSONL"), ("hh", "Anthropic HH JSONL")]

    file = forms.FileField(
        help_text=".jsonl or .jsonl.gz, one comparison or demonstration per line"
    )
    KINDS = [
        ("auto", "Detect per line"),
        ("comparisons", "Comparisons"),
        ("demonstrations", "Demonstrations (ideal responses)"),
    ]

    fmt = forms.ChoiceField(choices=FORMATS, initial="native", label="Format")
    kind = forms.ChoiceField(
        choices=KINDS,
        initial="auto",
        required=False,
        label="Holds",
        help_text="Detect: a line with a 'response' and no 'chosen' or 'response_a' is a "
        "demonstration. Demonstrations from HH: each row's chosen transcript.",
    )
    category = forms.ChoiceField(
        choices=[("", "From the file (native)")]
        + [(c.value, c.value.capitalize()) for c in Category],
        required=False,
        help_text="Required for HH files, which carry no category.",
    )
    with_labels = forms.BooleanField(
        required=False, initial=True, label="Keep HH's chosen side as an imported label"
    )
    skip_invalid = forms.BooleanField(
        required=False,
        label="Skip invalid rows (partial import)",
        help_text="Off: any invalid row rejects the whole file and nothing is written.",
    )

    def clean(self):
        data = super().clean()
        data["kind"] = data.get("kind") or "auto"  # forms posted before the choice existed
        if (
            data.get("fmt") == "hh"
            and data.get("kind") != "demonstrations"
            and not data.get("category")
        ):
            self.add_error("category", "HH files carry no category: choose helpfulness or safety.")
        return data
