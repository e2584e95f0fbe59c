"""The launch form: translates POST data into ``iteration_launch`` arguments."""

from __future__ import annotations

from django import forms

from annotation.form_fields import ModelIdsChoiceField
from annotation.importers import load_line
from modeling.selectors import batches_frozen
from rlhf.methods import METHODS
from rlhf.models import Iteration
from rlhf.settings import IterationSettings, setting_bounds, settings_from_pairs

_DEFAULTS = IterationSettings()


class IterationLaunchForm(forms.Form):
    batches = ModelIdsChoiceField(
        queryset=batches_frozen(),
        widget=forms.CheckboxSelectMultiple,
        help_text="Frozen batches to train on.",
    )
    method = forms.ChoiceField(
        choices=Iteration.Method.choices,
        initial=Iteration.Method.BOTH,
        help_text="What each method trains from, needs and costs is listed below.",
    )
    parent = forms.ChoiceField(
        required=False,
        label="Start from",
        help_text="Several methods started from the same parent on the same batches show side "
        "by side on the Lineage page.",
    )
    # The methods' own fields may be left out (a script posting the form): the setting's
    # default stands.
    dpo_beta = forms.FloatField(
        required=False, initial=_DEFAULTS.dpo.beta, label="DPO β", **setting_bounds("dpo.beta")
    )
    dpo_loss_type = forms.ChoiceField(
        required=False,
        choices=[("sigmoid", "sigmoid (DPO)"), ("ipo", "IPO"), ("robust", "robust DPO")],
        initial=_DEFAULTS.dpo.loss_type,
        label="DPO loss",
    )
    grpo_group_size = forms.IntegerField(
        required=False,
        initial=_DEFAULTS.grpo.group_size,
        label="GRPO G",
        **setting_bounds("grpo.group_size"),
    )
    grpo_steps = forms.IntegerField(
        required=False,
        initial=_DEFAULTS.grpo.steps,
        label="GRPO steps",
        **setting_bounds("grpo.steps"),
    )
    rs_num_samples = forms.IntegerField(
        initial=_DEFAULTS.rejection_sampling.num_samples,
        label="Rejection sampling K",
        **setting_bounds("rejection_sampling.num_samples"),
    )
    ppo_steps = forms.IntegerField(
        initial=_DEFAULTS.ppo.steps, label="PPO steps", **setting_bounds("ppo.steps")
    )
    ppo_kl_coef = forms.FloatField(
        initial=_DEFAULTS.ppo.kl_coef, label="PPO β (KL)", **setting_bounds("ppo.kl_coef")
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

    extra_settings = forms.CharField(
        required=False,
        label="Other settings (JSON)",
        widget=forms.Textarea(
            attrs={
                "rows": 2,
                "placeholder": '{"rrhf": {"num_samples": 8}, "dpo": {"use_margin": true}}',
            }
        ),
        help_text="Any iteration setting by its section (docs/rlhf.md, Iteration settings); "
        "these win over the fields above.",
    )

    def __init__(self, *args, **kwargs) -> None:
        from rlhf.selectors import policy_choices, policy_current

        super().__init__(*args, **kwargs)
        current = policy_current()
        self.fields["parent"].choices = [("", f"the current policy ({current.name})")] + [
            (name, name) for name in policy_choices() if name != current.name
        ]

    def clean_extra_settings(self) -> dict:
        text = self.cleaned_data["extra_settings"].strip()
        if not text:
            return {}
        value, problem = load_line(text)  # nesting checked before parsing: no RecursionError
        if problem is not None:
            raise forms.ValidationError(f"Not JSON: {problem}.")
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"dpo": {"beta": 0.2}}.')
        return value

    def settings_json(self) -> dict:
        """The nested settings JSON (``IterationSettings.from_json`` validates it)."""
        d = self.cleaned_data
        return settings_from_pairs(
            list(d["extra_settings"].items()),
            settings_from_pairs(
                [
                    (path, d[name])
                    for name, path in SETTING_OF_FIELD.items()
                    if self.fields[name].required or d[name] not in (None, "")
                ]
                + [("next_batch_temperatures", [d["temperature_a"], d["temperature_b"]])]
            ),
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
            if (
                key.startswith("settings.")
                and name is None
                and self.cleaned_data.get("extra_settings")
            ):
                name = "extra_settings"  # a section the JSON field set
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
    "dpo_beta": "dpo.beta",
    "dpo_loss_type": "dpo.loss_type",
    "grpo_group_size": "grpo.group_size",
    "grpo_steps": "grpo.steps",
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

# The launch form's list of methods: (value, label, one line on what it needs and costs).
METHOD_LINES = [(m, info.label, info.summary) for m, info in METHODS.items()]
