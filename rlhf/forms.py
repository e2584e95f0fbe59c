"""The launch form: translates POST data into ``iteration_launch`` arguments."""

from __future__ import annotations

from django import forms

from annotation.form_fields import ModelIdsChoiceField
from modeling.selectors import batches_frozen
from rlhf.models import Iteration
from rlhf.settings import IterationSettings, setting_bounds, settings_from_pairs

_DEFAULTS = IterationSettings()


class IterationLaunchForm(forms.Form):
    batches = ModelIdsChoiceField(
        queryset=batches_frozen(),
        widget=forms.CheckboxSelectMultiple,
        help_text="Frozen batches to train on.",
    )
    method = forms.ChoiceField(choices=Iteration.Method.choices, initial=Iteration.Method.BOTH)
    rs_num_samples = forms.IntegerField(
        initial=_DEFAULTS.rejection_sampling.num_samples,
        label="K",
        **setting_bounds("rejection_sampling.num_samples"),
    )
    ppo_steps = forms.IntegerField(
        initial=_DEFAULTS.ppo.steps, label="PPO steps", **setting_bounds("ppo.steps")
    )
    ppo_kl_coef = forms.FloatField(
        initial=_DEFAULTS.ppo.kl_coef, label="β (KL)", **setting_bounds("ppo.kl_coef")
    )
    max_prompts = forms.IntegerField(initial=_DEFAULTS.max_prompts, **setting_bounds("max_prompts"))
    next_batch_prompts = forms.IntegerField(
        initial=_DEFAULTS.next_batch_prompts, **setting_bounds("next_batch_prompts")
    )
    temperature_a = forms.FloatField(initial=_DEFAULTS.next_batch_temperatures[0])
    temperature_b = forms.FloatField(initial=_DEFAULTS.next_batch_temperatures[1])
    next_batch_versus_previous = forms.BooleanField(
        required=False, label="Second response from the previous policy"
    )
    accept_min_win_rate = forms.FloatField(
        initial=_DEFAULTS.accept_min_win_rate, **setting_bounds("accept_min_win_rate")
    )
    judge = forms.CharField(
        required=False,
        max_length=200,
        label="Judge reward model",
        widget=forms.TextInput(attrs={"placeholder": "blank: the newest independent judge"}),
        help_text="A reward model marked judge, trained on data the proxies never saw.",
    )
    require_judge = forms.BooleanField(
        required=False, label="Accept only if the judge also prefers the new policy"
    )
    server_url = forms.CharField(
        required=False,
        max_length=500,
        label="Inference server",
        widget=forms.TextInput(attrs={"placeholder": "blank: sample in the worker"}),
        help_text="An OpenAI-compatible server (vLLM) serving each policy under its name; "
        "it samples every stage but PPO.",
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
        """The nested settings JSON (``IterationSettings.from_json`` validates it)."""
        d = self.cleaned_data
        return settings_from_pairs(
            [(path, d[name]) for name, path in SETTING_OF_FIELD.items()]
            + [("next_batch_temperatures", [d["temperature_a"], d["temperature_b"]])]
        )

    def add_settings_errors(self, errors: dict[str, list[str]]) -> bool:
        """Show the service's ``settings.<path>`` errors on the fields that set them;
        False when some error names no field of this form."""
        shown = True
        for key, messages in errors.items():
            path = key.removeprefix("settings.")
            name = FIELD_OF_SETTING.get(path)
            if path.startswith("next_batch_temperatures"):
                name = "temperature_b" if path.endswith(".1") else "temperature_a"
            if not key.startswith("settings.") or name is None:
                shown = False
                continue
            for message in messages:
                self.add_error(name, message)
        return shown


# Form field → the setting it sets (dotted path); the temperatures are a pair.
SETTING_OF_FIELD = {
    "rs_num_samples": "rejection_sampling.num_samples",
    "ppo_steps": "ppo.steps",
    "ppo_kl_coef": "ppo.kl_coef",
    "max_prompts": "max_prompts",
    "next_batch_prompts": "next_batch_prompts",
    "next_batch_versus_previous": "next_batch_versus_previous",
    "accept_min_win_rate": "accept_min_win_rate",
    "judge": "evaluation.judge",
    "require_judge": "evaluation.require_judge",
    "server_url": "sampling.server_url",
    "reward_helpfulness_path": "reward_helpfulness_path",
    "reward_safety_path": "reward_safety_path",
}
FIELD_OF_SETTING = {path: name for name, path in SETTING_OF_FIELD.items()}
