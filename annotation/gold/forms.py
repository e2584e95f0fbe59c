"""Forms of the batch quality page: they parse input; ``annotation.gold.services`` and
``annotation.queue.pauses`` do the work."""

from __future__ import annotations

from django import forms

from annotation.columns import ID_MAX
from annotation.domain import STRENGTH_LABELS, Choice
from annotation.gold.services import GOLD_RATE_MAX
from annotation.models import Batch


class BatchQualityForm(forms.Form):
    gold_rate = forms.FloatField(
        min_value=0, max_value=GOLD_RATE_MAX, help_text="Share of tasks that are gold checks."
    )
    gold_min_accuracy = forms.FloatField(
        min_value=0, max_value=1, help_text="Pause an annotator below this gold accuracy."
    )
    gold_min_items = forms.IntegerField(
        min_value=1, max_value=32767, help_text="…once they answered this many gold checks."
    )
    labels_per_comparison_max = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=32767,
        help_text="Adaptive overlap: up to this many labels while they disagree (blank: off).",
    )
    queue_order = forms.ChoiceField(choices=Batch.QueueOrder.choices)

    @classmethod
    def for_batch(cls, batch: Batch) -> BatchQualityForm:
        return cls(
            initial={
                "gold_rate": batch.gold_rate,
                "gold_min_accuracy": batch.gold_min_accuracy,
                "gold_min_items": batch.gold_min_items,
                "labels_per_comparison_max": batch.labels_per_comparison_max,
                "queue_order": batch.queue_order,
            }
        )


class GoldMarkForm(forms.Form):
    comparison = forms.IntegerField(min_value=1, max_value=ID_MAX, label="Comparison id")
    preferred = forms.ChoiceField(
        choices=[(c.value, f"Response {c.value}") for c in Choice], label="Expected answer"
    )
    min_strength = forms.ChoiceField(
        choices=[("", "Any strength")] + [(s.value, label) for s, label in STRENGTH_LABELS.items()],
        required=False,
        label="At least",
    )
    note = forms.CharField(required=False, max_length=2000, widget=forms.TextInput)


class PauseForm(forms.Form):
    reason = forms.CharField(max_length=2000, widget=forms.TextInput)
