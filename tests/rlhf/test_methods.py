"""Choosing the method of an iteration (issue 11): the methods table, the launch form, the
command and the API; an iteration per method end to end on tiny models (eager tasks);
the same parent for several methods, side by side on the lineage page; bad input."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from annotation.models import Batch
from rlhf import selectors, services
from rlhf.methods import METHODS, TRAINING_STAGES
from rlhf.models import Iteration, IterationStage
from rlhf.settings import IterationSettings, IterationSettingsError
from tests.factories import UserFactory
from tests.rlhf.conftest import SMALL, demonstration_batch, frozen_batch

pytestmark = pytest.mark.django_db(transaction=True)

# Each method at the smallest size that still trains a few steps.
TINY_METHODS = {
    **SMALL,
    "sft": {"epochs": 1, "batch_size": 2},
    "dpo": {"epochs": 1, "batch_size": 2},
    "online_dpo": {"num_samples": 3, "epochs": 1, "batch_size": 2},
    "rrhf": {"num_samples": 3, "epochs": 1, "batch_size": 2},
    "pro": {"num_samples": 3, "epochs": 1, "batch_size": 2},
    "grpo": {"steps": 2, "prompts_per_step": 2, "group_size": 3},
    "rloo": {"steps": 2, "prompts_per_step": 2, "group_size": 3},
}


def launch(models, batches, method, parent=None, **overrides):
    config = {
        **TINY_METHODS,
        "reward_helpfulness_path": str(models["helpful"]),
        "reward_safety_path": str(models["safety"]),
        **overrides,
    }
    return services.iteration_launch(
        batch_ids=[b.pk for b in batches], method=method, settings_json=config, parent=parent
    )


def test_every_method_is_described_and_has_its_stages_and_settings():
    settings = IterationSettings()
    assert set(METHODS) == set(Iteration.Method.values)
    for method, info in METHODS.items():
        assert info.stages[-2:] in (
            (IterationStage.Name.EVALUATE, IterationStage.Name.NEXT_BATCH),
            (IterationStage.Name.REGISTER, IterationStage.Name.NEXT_BATCH),
        ), method
        trains = [s for s in info.stages if s in TRAINING_STAGES]
        assert trains, f"{method} trains nothing"
        for section in info.settings:
            assert hasattr(settings, section), (method, section)
        assert info.trains_from and info.needs and info.cost and "20" in info.paper


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("dpo.beta", 0, "greater than 0"),
        ("dpo.beta", -1.0, "greater than 0"),
        ("grpo.group_size", 1, "greater than or equal to 2"),
        ("rloo.group_size", 1, "greater than or equal to 2"),
        ("rrhf.num_samples", 1, "greater than or equal to 2"),
        ("online_dpo.num_samples", 1, "greater than or equal to 2"),
        ("dpo.loss_type", "hinge2", "sigmoid"),
    ],
)
def test_bad_method_settings_name_the_field(path, value, message):
    section, name = path.split(".")
    with pytest.raises(IterationSettingsError) as exc:
        IterationSettings.from_json({section: {name: value}})
    assert path in exc.value.errors and message in exc.value.errors[path]


def test_rloo_is_grpo_with_the_leave_one_out_baseline():
    settings = IterationSettings()
    assert settings.rloo.baseline == "leave_one_out" and settings.grpo.baseline == "group"
    # the shared sampling settings reach every section
    custom = IterationSettings.from_json({"sampling": {"max_new_tokens": 7}, "seed": 3})
    for section in ("dpo", "online_dpo", "rrhf", "pro", "grpo", "rloo"):
        assert getattr(custom, section).max_new_tokens == 7, section
        assert getattr(custom, section).seed == 3, section


@pytest.mark.slow
@pytest.mark.parametrize(
    "method", ["sft", "dpo", "rs_dpo", "online_dpo", "rrhf", "pro", "grpo", "rloo"]
)
def test_one_iteration_per_method_end_to_end(rlhf_models, method):
    batches = [frozen_batch(8, "week-1")]
    if method == "sft":
        batches = [demonstration_batch(8, "demos")]
    iteration = launch(rlhf_models, batches, method)
    iteration.refresh_from_db()
    stages = {s.name: s for s in iteration.stages.all()}
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error
    assert [s.name for s in iteration.stages.order_by("order")] == list(METHODS[method].stages)
    assert all(s.status == "done" for s in stages.values()), [
        (s.name, s.error) for s in stages.values()
    ]
    trained = [stages[s] for s in METHODS[method].stages if s in TRAINING_STAGES]
    last = trained[-1]
    assert iteration.policy_name == "RLHF-V1"
    assert iteration.policy_path == last.result["checkpoint"]
    steps = last.result["steps"]
    assert steps and steps[-1]["step"] == steps[-1]["total"] == len(steps)
    assert all("loss" in s for s in steps)
    assert not (services.policy_dir(1) / f"{last.name}.state").exists()  # cleaned up
    if len(trained) == 2:  # rejection sampling, then DPO from its policy
        assert last.result["started_from"] == trained[0].result["checkpoint"]
    else:
        assert last.result["started_from"] == iteration.start_policy_path
    if method in ("dpo", "rs_dpo"):
        assert {
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
        } <= set(steps[0])
        assert last.result["pairs"] >= 1 and last.result["held_out_pairs_left_out"] >= 1
    if method in ("grpo", "rloo"):
        assert {"reward", "kl", "clip_fraction"} <= set(steps[0])
    from modeling.models import ModelVersion

    version = ModelVersion.objects.get(name="RLHF-V1")
    assert version.config["method"] == method and version.metrics["final_step"] == steps[-1]
    if method == "sft":
        assert "evaluate" not in stages and last.result["demonstrations"] == 8
    else:
        assert iteration.evaluation.n_prompts >= 1
    assert iteration.next_batch.status == Batch.Status.OPEN


def test_dpo_needs_labelled_pairs_and_sft_needs_demonstrations(rlhf_models):
    from tests.factories import BatchFactory, make_comparison

    unlabelled = BatchFactory(name="unlabelled")
    make_comparison(unlabelled)
    make_comparison(unlabelled)
    Batch.objects.filter(pk=unlabelled.pk).update(status=Batch.Status.FROZEN)
    unlabelled.refresh_from_db()
    with pytest.raises(ValidationError) as exc:
        launch(rlhf_models, [unlabelled], "dpo")
    assert "DPO trains on labelled pairs" in str(exc.value) and "unlabelled" in str(exc.value)
    labelled = frozen_batch(4, "labelled")
    with pytest.raises(ValidationError) as exc:
        launch(rlhf_models, [labelled], "sft")
    assert "SFT trains on demonstrations" in str(exc.value)
    assert not Iteration.objects.exists()  # nothing half-made


def test_several_methods_from_the_same_parent_side_by_side(rlhf_models, client):
    week1 = frozen_batch(8, "week-1")
    first = launch(rlhf_models, [week1], "rejection_sampling")
    first.refresh_from_db()
    assert first.status == Iteration.Status.ACCEPTED, first.error
    second = launch(rlhf_models, [week1], "dpo")
    second.refresh_from_db()
    assert second.start_policy_name == "RLHF-V1"  # the current policy by default
    # A third from the same parent as the first (the base), by name.
    third = services.iteration_launch(
        batch_ids=[week1.pk],
        method="grpo",
        parent=first.start_policy_name,
        settings_json={
            **TINY_METHODS,
            "reward_helpfulness_path": str(rlhf_models["helpful"]),
            "reward_safety_path": str(rlhf_models["safety"]),
        },
    )
    third.refresh_from_db()
    assert third.status == Iteration.Status.ACCEPTED, third.error
    assert third.start_policy_name == first.start_policy_name
    assert third.start_policy_path == first.start_policy_path
    groups = selectors.lineage_siblings()
    assert [[it.name for it in g.iterations] for g in groups] == [["RLHF-V1", "RLHF-V3"]]
    # Same held-out prompts: both evaluations compared on the same prompt hashes.
    evaluated = [it.stages.get(name="evaluate").result["prompts"] for it in groups[0].iterations]
    assert evaluated[0] == evaluated[1]
    client.force_login(UserFactory(role="admin"))
    page = client.get("/rlhf/lineage/").content.decode()
    assert "Methods side by side: from base on week-1" in page
    assert "Rejection sampling" in page and "GRPO" in page


def test_a_parent_that_was_not_accepted_is_refused(rlhf_models):
    week1 = frozen_batch(6, "week-1")
    rejected = launch(rlhf_models, [week1], "rejection_sampling", accept_min_win_rate=1.0)
    rejected.refresh_from_db()
    if rejected.status != Iteration.Status.REJECTED:  # it won every prompt: force the case
        Iteration.objects.filter(pk=rejected.pk).update(status=Iteration.Status.REJECTED)
    with pytest.raises(ValidationError) as exc:
        launch(rlhf_models, [week1], "dpo", parent="RLHF-V1")
    assert "RLHF-V1 was rejected, not accepted" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        services.iteration_launch(batch_ids=[week1.pk], method="dpo", parent="RLHF-V9")
    assert "No policy named 'RLHF-V9'" in str(exc.value)
    assert Iteration.objects.count() == 1


def test_the_launch_form_explains_each_method_and_launches_dpo(rlhf_models, client):
    week1 = frozen_batch(6, "week-1")
    client.force_login(UserFactory(role="admin"))
    page = client.get("/rlhf/").content.decode()
    for info in METHODS.values():
        assert info.summary.replace("'", "&#x27;") in page
    # A bad JSON setting is shown on the JSON field, nothing launched.
    form = {
        "batches": [week1.pk],
        "method": "dpo",
        "rs_num_samples": 2,
        "ppo_steps": 2,
        "ppo_kl_coef": 0.01,
        "dpo_beta": 0.1,
        "dpo_loss_type": "ipo",
        "grpo_group_size": 2,
        "grpo_steps": 2,
        "max_prompts": 8,
        "next_batch_prompts": 4,
        "temperature_a": 0.7,
        "temperature_b": 1.0,
        "accept_min_win_rate": 0.0,
        "reward_helpfulness_path": str(rlhf_models["helpful"]),
        "reward_safety_path": str(rlhf_models["safety"]),
        "extra_settings": '{"dpo": {"epochs": 0}}',
    }
    response = client.post("/rlhf/iterations/launch/", form)
    assert response.status_code == 400
    assert "greater than or equal to 1" in response.content.decode()
    assert not Iteration.objects.exists()
    response = client.post("/rlhf/iterations/launch/", {**form, "extra_settings": "{nope"})
    assert response.status_code == 400 and "Not JSON" in response.content.decode()
    form["extra_settings"] = json.dumps(
        {"dpo": {"epochs": 1, "batch_size": 2}, "sampling": {"max_new_tokens": 8}}
    )
    response = client.post("/rlhf/iterations/launch/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    iteration = Iteration.objects.get()
    assert iteration.method == "dpo" and iteration.config["dpo"]["loss_type"] == "ipo"
    assert iteration.config["dpo"]["batch_size"] == 2


def test_the_command_and_the_api_take_the_method_and_the_parent(rlhf_models, client):
    week1 = frozen_batch(6, "week-1")
    with pytest.raises(CommandError) as exc:
        call_command(
            "pairwise_iteration", "--batches", "week-1", "--method", "dpo", "--parent", "nope"
        )
    assert "No policy named 'nope'" in str(exc.value)
    with pytest.raises(CommandError) as exc:
        call_command(
            "pairwise_iteration",
            "--batches",
            "week-1",
            "--method",
            "grpo",
            "--set",
            "grpo.group_size=1",
        )
    assert "grpo.group_size" in str(exc.value)
    client.force_login(UserFactory(role="admin"))
    response = client.post(
        "/api/v1/rlhf/iterations/",
        {
            "batch_ids": [week1.pk],
            "method": "online_dpo",
            "parent": "RLHF-V4",
            "settings": {},
        },
        content_type="application/json",
    )
    assert response.status_code == 400 and "parent" in response.json()["errors"]
    response = client.post(
        "/api/v1/rlhf/iterations/",
        {"batch_ids": [week1.pk], "method": "kto"},
        content_type="application/json",
    )
    assert response.status_code == 400 and "method" in response.json()["errors"]
    client.force_login(UserFactory(role="researcher"))
    response = client.post(
        "/api/v1/rlhf/iterations/",
        {"batch_ids": [week1.pk], "method": "dpo"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert not Iteration.objects.exists()


def test_a_reference_on_another_tokenizer_fails_the_stage_and_registers_nothing(
    rlhf_models, tmp_path
):
    from tests.chat_families import make_family_model

    week1 = frozen_batch(8, "week-1")
    other = make_family_model("qwen2", tmp_path / "qwen2-reference")
    iteration = launch(rlhf_models, [week1], "dpo", dpo_reference_path=str(other))
    iteration.refresh_from_db()
    stage = iteration.stages.get(name="dpo")
    assert iteration.status == Iteration.Status.FAILED and stage.status == "failed"
    assert "tokenizer differs from the policy" in stage.error, stage.error
    assert not iteration.policy_path and not iteration.policy_name
    from modeling.models import ModelVersion

    assert not ModelVersion.objects.filter(name="RLHF-V1").exists()
    # Fixed (the reference set back to the starting policy), the iteration resumes and ends.
    config = {**iteration.config, "dpo_reference_path": ""}
    Iteration.objects.filter(pk=iteration.pk).update(config=config)
    services.iteration_resume(iteration_id=iteration.pk)
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error


def test_a_nan_loss_fails_the_stage_with_a_clear_message(rlhf_models, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    week1 = frozen_batch(8, "week-1")
    broken = AutoModelForCausalLM.from_pretrained(rlhf_models["base"])
    with torch.no_grad():
        broken.lm_head.weight.fill_(float("nan"))
    broken.save_pretrained(tmp_path / "nan-reference")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(rlhf_models["base"]).save_pretrained(tmp_path / "nan-reference")
    iteration = launch(
        rlhf_models, [week1], "dpo", dpo_reference_path=str(tmp_path / "nan-reference")
    )
    iteration.refresh_from_db()
    stage = iteration.stages.get(name="dpo")
    assert iteration.status == Iteration.Status.FAILED
    assert "not finite" in stage.error and "resume" in stage.error, stage.error
    assert not (services.policy_dir(iteration.number) / "dpo").exists()


def test_launch_inputs_a_stranger_sends_are_refused_clearly(rlhf_models, client):
    week1 = frozen_batch(4, "week-1")
    client.force_login(UserFactory(role="admin"))
    form = {
        "batches": [week1.pk],
        "method": "dpo",
        "rs_num_samples": 2,
        "ppo_steps": 2,
        "ppo_kl_coef": 0.01,
        "max_prompts": 8,
        "next_batch_prompts": 4,
        "temperature_a": 0.7,
        "temperature_b": 1.0,
        "accept_min_win_rate": 0.0,
    }
    deep = client.post(
        "/rlhf/iterations/launch/", {**form, "extra_settings": "[" * 100_000 + "]" * 100_000}
    )
    assert deep.status_code == 400 and "nested more than 32 levels" in deep.content.decode()
    nul = client.post(
        "/rlhf/iterations/launch/",
        {**form, "extra_settings": '{"evaluation": {"judge": "a\\u0000b"}}'},
    )
    assert nul.status_code == 400 and "NUL" in nul.content.decode()
    huge = client.post(
        "/rlhf/iterations/launch/", {**form, "extra_settings": '{"dpo": {"beta": 1e400}}'}
    )
    assert huge.status_code == 400
    for settings in ({"evaluation": {"judge": "a\u0000b"}}, {"dpo_reference_path": "x\ud800"}):
        api = client.post(
            "/api/v1/rlhf/iterations/",
            {"batch_ids": [week1.pk], "method": "dpo", "settings": settings},
            content_type="application/json",
        )
        assert api.status_code == 400, api.content
    assert "settings.evaluation.judge" in str(
        client.post(
            "/api/v1/rlhf/iterations/",
            {
                "batch_ids": [week1.pk],
                "method": "dpo",
                "settings": {"evaluation": {"judge": "a\u0000b"}},
            },
            content_type="application/json",
        ).json()
    )
    api = client.post(
        "/api/v1/rlhf/iterations/",
        {"batch_ids": [week1.pk], "method": "dpo", "parent": "a\u0000b"},
        content_type="application/json",
    )
    assert api.status_code == 400 and "parent" in api.json()["errors"]
    assert not Iteration.objects.exists()
