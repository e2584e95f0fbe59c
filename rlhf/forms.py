"""The launch form: translates POST data into ``iteration_launch`` arguments."""

from __future__ import annotations

from django import forms

from annotation.models import Batch
from rlhf.models import Iteration
from rlhf.settings import IterationSettings

_DEFAULTS = IterationSettings()


class IterationLaunchForm(forms.Form):
    batches = forms.ModelMultipleChoiceField(
        queryset=Batch.objects.filter(status=Batch.Status.FROZEN).order_by("-frozen_at"),
        widget=forms.CheckboxSelectMultiple,
        help_text="Frozen batches to train on.",
    )
    method = forms.ChoiceField(choices=Iteration.Method.choices, initial=Iteration.Method.BOTH)
    rs_num_samples = forms.IntegerField(
        min_value=1, max_value=64, initial=_DEFAULTS.rs_num_samples, label="K"
    )
    ppo_steps = forms.IntegerField(
        min_value=1, max_value=10_000, initial=_DEFAULTS.ppo_steps, label="PPO steps"
    )
    ppo_kl_coef = forms.FloatField(min_value=0, initial=_DEFAULTS.ppo_kl_coef, label="β (KL)")
    max_prompts = forms.IntegerField(min_value=2, initial=_DEFAULTS.max_prompts)
    next_batch_prompts = forms.IntegerField(min_value=1, initial=_DEFAULTS.next_batch_prompts)
    temperature_a = forms.FloatField(min_value=0, initial=_DEFAULTS.next_batch_temperatures[0])
    temperature_b = forms.FloatField(min_value=0, initial=_DEFAULTS.next_batch_temperatures[1])
    next_batch_versus_previous = forms.BooleanField(
        required=False, label="Second response from the previous policy"
    )
    accept_min_win_rate = forms.FloatField(
        min_value=0, max_value=1, initial=_DEFAULTS.accept_min_win_rate
    )
    reward_helpfulness_path = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "blank: train from the batches"}),
    )
    reward_safety_path = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "blank: train from the batches"}),
    )

    def settings_json(self) -> dict:
        d = self.cleaned_data
        out = {
            k: d[k]
            for k in (
                "rs_num_samples",
                "ppo_steps",
                "ppo_kl_coef",
                "max_prompts",
                "next_batch_prompts",
                "next_batch_versus_previous",
                "accept_min_win_rate",
                "reward_helpfulness_path",
                "reward_safety_path",
            )
        }
        out["next_batch_temperatures"] = [d["temperature_a"], d["temperature_b"]]
        return out
