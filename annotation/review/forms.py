"""The reviewer's verdict form: accept one of the labels, or give a label of one's own."""

from __future__ import annotations

from django import forms

from annotation.domain import STRENGTH_ORDER
from annotation.models import CHOICE_CHOICES, SAFETY_TAG_CHOICES
from annotation.review.services import REASON_MAX_CHARS


class VerdictForm(forms.Form):
    """``verdict`` is a label id ("accept that label") or ``own`` (adjudicate)."""

    verdict = forms.CharField(error_messages={"required": "Accept a label or give your own."})
    preferred = forms.ChoiceField(choices=CHOICE_CHOICES, required=False)
    strength = forms.ChoiceField(
        choices=[(s.value, s.label) for s in STRENGTH_ORDER], required=False
    )
    safety_a = forms.ChoiceField(choices=SAFETY_TAG_CHOICES, required=False)
    safety_b = forms.ChoiceField(choices=SAFETY_TAG_CHOICES, required=False)
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=REASON_MAX_CHARS,
        error_messages={"required": "Say why: the reason is part of the audit trail."},
    )

    def clean_verdict(self) -> str:
        value = self.cleaned_data["verdict"]
        if value != "own" and not value.isdigit():
            raise forms.ValidationError("Choose one of the labels, or “my own label”.")
        return value

    def service_arguments(self) -> dict:
        """The keyword arguments of ``services.review_verdict_record`` for this verdict."""
        data = self.cleaned_data
        if data["verdict"] != "own":
            return {"accepted_label_id": int(data["verdict"]), "reason": data["reason"]}
        return {
            "preferred": data["preferred"] or None,
            "strength": data["strength"],
            "safety_a": data["safety_a"] or None,
            "safety_b": data["safety_b"] or None,
            "reason": data["reason"],
        }
