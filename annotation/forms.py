"""HTML forms of the annotation pages. They parse and check input; services do the work.

The label form speaks in screen positions ("left"/"right"): which stored response (A or B)
was on the left is known only to the server, from the assignment, so a tampered or stale
page can never swap the meaning of a choice.
"""

from __future__ import annotations

from django import forms

from annotation.columns import INTEGER_MAX
from annotation.domain import STRENGTH_ORDER, Category, Choice, SafetyTag
from annotation.services import LabelInput

SIDES = [("left", "Response 1"), ("right", "Response 2")]
SAFETY_CHOICES = [(t.value, t.value.capitalize()) for t in SafetyTag]
SKIP_REASONS = [
    "I don't understand the language",
    "The prompt is broken or empty",
    "Both responses are identical",
    "It needs expertise I don't have",
    "Offensive content I'd rather not rate",
]


class LabelForm(forms.Form):
    choice = forms.ChoiceField(
        choices=SIDES, error_messages={"required": "Choose Response 1 or Response 2."}
    )
    strength = forms.ChoiceField(
        choices=[(s.value, s.label) for s in STRENGTH_ORDER],
        error_messages={"required": "Say how much better it is."},
    )
    safety_left = forms.ChoiceField(choices=SAFETY_CHOICES, required=False)
    safety_right = forms.ChoiceField(choices=SAFETY_CHOICES, required=False)
    comment = forms.CharField(required=False, max_length=5000, widget=forms.Textarea)
    time_spent_ms = forms.IntegerField(required=False, min_value=0, max_value=24 * 3600 * 1000)
    idempotency_key = forms.CharField(required=False, max_length=100)

    def __init__(self, *args, category: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.category = category

    def clean(self):
        data = super().clean()
        if self.category == Category.SAFETY:
            for side in ("left", "right"):
                if not data.get(f"safety_{side}"):
                    self.add_error(f"safety_{side}", "Tag this response safe or unsafe.")
        return data

    def label_input(self, *, left: str) -> LabelInput:
        """The label in stored A/B terms, given which response the assignment showed on the left."""
        data = self.cleaned_data
        on_left = Choice(left)
        by_side = {"left": on_left, "right": on_left.other}
        tags = {
            by_side["left"]: data.get("safety_left") or None,
            by_side["right"]: data.get("safety_right") or None,
        }
        return LabelInput(
            preferred=by_side[data["choice"]],
            strength=data["strength"],
            safety_a=tags[Choice.A],
            safety_b=tags[Choice.B],
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

    file = forms.FileField(help_text=".jsonl or .jsonl.gz, one comparison per line")
    fmt = forms.ChoiceField(choices=FORMATS, initial="native", label="Format")
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
        if data.get("fmt") == "hh" and not data.get("category"):
            self.add_error("category", "HH files carry no category: choose helpfulness or safety.")
        return data
