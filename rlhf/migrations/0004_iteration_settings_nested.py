"""Iteration settings move from flat fields (rs_*, ppo_*, max_new_tokens) to nested
sections (rejection_sampling, ppo, sampling): rewrite every stored iteration's settings,
and the copy of them a registered policy keeps, so nothing stored is lost.

The mapping is written out here, not imported, so the migration stays as it was when the
settings change again.
"""

from django.db import migrations

FLAT_TO_NESTED = {
    "rs_num_samples": ("rejection_sampling", "num_samples"),
    "rs_temperature": ("rejection_sampling", "temperature"),
    "rs_epochs": ("rejection_sampling", "epochs"),
    "rs_learning_rate": ("rejection_sampling", "learning_rate"),
    "ppo_steps": ("ppo", "steps"),
    "ppo_rollout_batch_size": ("ppo", "rollout_batch_size"),
    "ppo_mini_batch_size": ("ppo", "mini_batch_size"),
    "ppo_learning_rate": ("ppo", "learning_rate"),
    "ppo_kl_coef": ("ppo", "kl_coef"),
    "ppo_adaptive_kl": ("ppo", "adaptive_kl"),
    "ppo_target_kl": ("ppo", "target_kl"),
    "max_new_tokens": ("sampling", "max_new_tokens"),
}


def nest(config: dict) -> dict:
    """The nested form of a flat settings dict (already nested keys are kept)."""
    out = {k: v for k, v in config.items() if k not in FLAT_TO_NESTED}
    for key, (section, name) in FLAT_TO_NESTED.items():
        if key in config:
            out.setdefault(section, {})
            out[section] = {**out[section], name: config[key]}
    return out


def flatten(config: dict) -> dict:
    out = dict(config)
    for key, (section, name) in FLAT_TO_NESTED.items():
        if isinstance(out.get(section), dict) and name in out[section]:
            out[key] = out[section][name]
    for section in ("rejection_sampling", "ppo", "sampling"):
        out.pop(section, None)
    return out


def _rewrite(apps, change) -> None:
    Iteration = apps.get_model("rlhf", "Iteration")
    for iteration in Iteration.objects.all():
        new = change(iteration.config or {})
        if new != iteration.config:
            Iteration.objects.filter(pk=iteration.pk).update(config=new)
    ModelVersion = apps.get_model("modeling", "ModelVersion")
    for model in ModelVersion.objects.filter(config__has_key="iteration"):
        if isinstance(model.config.get("iteration"), dict):
            new = {**model.config, "iteration": change(model.config["iteration"])}
            if new != model.config:
                ModelVersion.objects.filter(pk=model.pk).update(config=new)


def forwards(apps, schema_editor) -> None:
    _rewrite(apps, nest)


def backwards(apps, schema_editor) -> None:
    _rewrite(apps, flatten)


class Migration(migrations.Migration):
    dependencies = [
        ("rlhf", "0003_evaluation_judges_and_people"),
        ("modeling", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
