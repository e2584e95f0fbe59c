"""``next_batch_server_url`` becomes ``sampling.server_url``: the inference server now serves
every stage that samples, not only the next batch. Rewrite every stored iteration's settings,
and the copy of them a registered policy keeps. Written out here, not imported."""

from django.db import migrations

OLD, SECTION, NEW = "next_batch_server_url", "sampling", "server_url"


def forwards_one(config: dict) -> dict:
    if OLD not in config:
        return config
    out = {k: v for k, v in config.items() if k != OLD}
    out[SECTION] = {**(out.get(SECTION) or {}), NEW: config[OLD]}
    return out


def backwards_one(config: dict) -> dict:
    section = config.get(SECTION)
    if not isinstance(section, dict) or NEW not in section:
        return config
    rest = {k: v for k, v in section.items() if k != NEW}
    return {**config, SECTION: rest, OLD: section[NEW]}


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
    _rewrite(apps, forwards_one)


def backwards(apps, schema_editor) -> None:
    _rewrite(apps, backwards_one)


class Migration(migrations.Migration):
    dependencies = [("rlhf", "0005_stage_heartbeat"), ("modeling", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
