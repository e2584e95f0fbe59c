"""Launch forms (validation of HTTP input only; services do the work)."""

from __future__ import annotations

from django import forms

from annotation.columns import INTEGER_MAX
from annotation.domain import MarginTable
from annotation.form_fields import ModelIdsChoiceField
from modeling.models import ModelVersion
from modeling.selectors import batches_frozen, model_version_ready


class BaseModelForm(forms.Form):
    name = forms.CharField(
        required=False,
        max_length=200,
        help_text="Blank: base-v{N}.",
        widget=forms.TextInput(attrs={"placeholder": "base-v{N}"}),  # appearance only
    )
    max_steps = forms.IntegerField(min_value=1, max_value=INTEGER_MAX, initial=3000)
    max_seconds = forms.IntegerField(
        min_value=0, initial=480, help_text="Time bound on creation (0: none)."
    )
    use_frozen_batches = forms.BooleanField(
        required=False,
        initial=True,
        help_text="Pretrain also on dialogues of frozen batches (held-out prompts excluded).",
    )
    use_shared_hh = forms.BooleanField(
        required=False,
        label="Use shared HH dialogues",
        initial=False,
        help_text="Pretrain also on the HH dialogues in the shared data folder (held-out prompts excluded).",
    )


class RegisterModelForm(forms.Form):
    """A local Hugging Face model folder to register (``services.model_register``)."""

    name = forms.CharField(max_length=200)
    path = forms.CharField(
        max_length=500,
        label="Folder",
        help_text="A folder on the server holding config.json, weights and a tokenizer.",
        widget=forms.TextInput(attrs={"placeholder": "/models/Meta-Llama-3-8B-Instruct"}),
    )
    use_pairwise_template = forms.BooleanField(
        required=False,
        label="Use Pairwise's template",
        help_text="For a tokenizer without a chat template of its own: Pairwise's markers, "
        "written as plain text (nothing added to the vocabulary). Fine-tune before sampling.",
    )


class RewardModelForm(forms.Form):
    kind = forms.ChoiceField(choices=[("helpfulness", "Helpfulness"), ("safety", "Safety")])
    base_model = forms.ModelChoiceField(queryset=ModelVersion.objects.none())
    batches = ModelIdsChoiceField(queryset=batches_frozen(), widget=forms.CheckboxSelectMultiple)
    name = forms.CharField(
        required=False,
        max_length=200,
        help_text="Blank: RM-{kind}-V{N}.",
        widget=forms.TextInput(attrs={"placeholder": "RM-{kind}-V{N}"}),  # appearance only
    )
    margin = forms.ChoiceField(
        choices=[(m.value, m.value) for m in MarginTable], initial=MarginTable.SMALL.value
    )
    other_ratio = forms.FloatField(
        required=False,
        min_value=0,
        widget=forms.NumberInput(attrs={"placeholder": "auto", "step": "any"}),  # appearance only
        help_text="Share from the other category (blank: 1.0 for helpfulness, 0.1 for safety).",
    )
    learning_rate = forms.FloatField(initial=2e-4, min_value=1e-7, max_value=0.5)
    num_epochs = forms.FloatField(initial=1.0, min_value=0.01, max_value=20)
    lora_rank = forms.IntegerField(
        label="LoRA rank",
        required=False,
        min_value=0,
        max_value=1024,
        initial=0,
        help_text="Train LoRA adapters of this rank on every linear layer (0: every weight).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base_model"].queryset = model_version_ready().exclude(
            kind__startswith="reward"
        )
        self.fields["batches"].queryset = batches_frozen()
