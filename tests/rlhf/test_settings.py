"""Iteration settings: nested sections, every field's type and range checked with its dotted
path, in the API, the launch form and the command; stored flat settings migrated."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Batch
from rlhf.ml.ppo.config import PPOConfig
from rlhf.ml.rejection_sampling.config import RejectionSamplingConfig
from rlhf.models import Iteration
from rlhf.settings import IterationSettings, IterationSettingsError, settings_from_pairs
from tests.factories import BatchFactory, UserFactory


def test_defaults_round_trip_through_nested_json():
    settings = IterationSettings()
    stored = settings.as_json()
    assert stored["ppo"]["steps"] == 4 and stored["rejection_sampling"]["num_samples"] == 4
    assert stored["sampling"] == {
        "max_new_tokens": 48,
        "overlong_prompts": "truncate_left",
        "server_url": "",
    }
    assert "max_new_tokens" not in stored["ppo"] and "seed" not in stored["rejection_sampling"]
    assert IterationSettings.from_json(stored) == settings


def test_method_sections_are_the_ml_configs_with_the_shared_sampling_copied_in():
    settings = IterationSettings.from_json(
        {"ppo": {"kl_coef": 0.05}, "sampling": {"max_new_tokens": 12}, "seed": 7}
    )
    assert isinstance(settings.ppo, PPOConfig)
    assert isinstance(settings.rejection_sampling, RejectionSamplingConfig)
    # a section given in part keeps the iteration's defaults, not the paper's (512)
    assert settings.ppo.kl_coef == 0.05 and settings.ppo.rollout_batch_size == 16
    assert settings.ppo.max_new_tokens == settings.rejection_sampling.max_new_tokens == 12
    assert settings.ppo.seed == settings.rejection_sampling.seed == 7


@pytest.mark.parametrize(
    "data, path, says",
    [
        ({"next_batch_temperatures": 5}, "next_batch_temperatures", "valid array"),
        ({"next_batch_temperatures": [0.7, "hot"]}, "next_batch_temperatures.1", "number"),
        ({"next_batch_temperatures": [0.7, 11]}, "next_batch_temperatures.1", "less than"),
        ({"max_prompts": "64"}, "max_prompts", "valid integer"),
        ({"max_prompts": 1}, "max_prompts", "greater than or equal to 2"),
        ({"max_prompts": 10**30}, "max_prompts", "less than or equal"),
        ({"eval_fraction": 1.5}, "eval_fraction", "less than 1"),
        ({"next_batch_versus_previous": 1}, "next_batch_versus_previous", "boolean"),
        ({"reward_training": [1]}, "reward_training", "object"),
        ({"ppo": 3}, "ppo", "object"),
        ({"ppo": {"kl_coef": -0.1}}, "ppo.kl_coef", "greater than or equal to 0"),
        ({"ppo": {"steps": 2.5}}, "ppo.steps", "valid integer"),
        ({"ppo": {"adam_betas": [0.9, 1.0]}}, "ppo.adam_betas.1", "less than 1"),
        ({"ppo": {"clip_ranges": 0.2}}, "ppo.clip_ranges", "unknown setting"),
        ({"ppo": {"max_new_tokens": 64}}, "ppo.max_new_tokens", "sampling.max_new_tokens"),
        ({"rejection_sampling": {"seed": 1}}, "rejection_sampling.seed", "set seed"),
        ({"rejection_sampling": {"num_samples": 0}}, "rejection_sampling.num_samples", ">= 1"),
        ({"sampling": {"overlong_prompts": "drop"}}, "sampling.overlong_prompts", "'skip'"),
        ({"ppo_steps": 8}, "ppo_steps", "renamed to ppo.steps"),
        ({"sampling": {"server_url": "file:///etc/passwd"}}, "sampling.server_url", "http"),
        ({"sampling": {"server_url": "gopher://x/"}}, "sampling.server_url", "http"),
        ({"next_batch_server_url": "http://x/v1"}, "next_batch_server_url", "sampling.server_url"),
        ({"reward_safety_path": "x" * 501}, "reward_safety_path", "at most 500"),
    ],
)
def test_a_bad_field_is_named_by_its_dotted_path(data, path, says):
    with pytest.raises(IterationSettingsError) as caught:
        IterationSettings.from_json(data)
    assert path in caught.value.errors, caught.value.errors
    message = caught.value.errors[path].replace("greater than or equal to 1", ">= 1")
    assert says in message, message


def test_not_an_object_and_non_finite_numbers_are_refused():
    with pytest.raises(IterationSettingsError, match="JSON object"):
        IterationSettings.from_json([1, 2])
    with pytest.raises(IterationSettingsError, match="eval_fraction"):
        IterationSettings.from_json({"eval_fraction": float("nan")})


def test_http_server_urls_are_accepted():
    for url in ("http://127.0.0.1:8000/v1", "https://vllm.internal/v1", ""):
        settings = IterationSettings.from_json({"sampling": {"server_url": url}})
        assert settings.sampling.server_url == url


def test_settings_from_pairs_nests_dotted_paths_over_a_base():
    base = {"ppo": {"steps": 4, "mini_batch_size": 4}, "max_prompts": 8}
    out = settings_from_pairs([("ppo.steps", 8), ("ppo", {"kl_coef": 0.1}), ("seed", 2)], base)
    assert out == {
        "ppo": {"steps": 8, "mini_batch_size": 4, "kl_coef": 0.1},
        "max_prompts": 8,
        "seed": 2,
    }
    assert base["ppo"]["steps"] == 4  # the base is not changed


# --- every entry point: a clear 400 / form error / command error, nothing written -------


@pytest.mark.django_db
def test_api_answers_400_naming_the_field(client):
    client.force_login(UserFactory(username="boss", role="admin"))
    response = client.post(
        "/api/v1/rlhf/iterations/",
        {"batch_ids": [1], "settings": {"next_batch_temperatures": 5, "ppo": {"steps": 0}}},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    text = str(body)
    assert "settings.next_batch_temperatures" in text and "settings.ppo.steps" in text
    assert Iteration.objects.count() == 0


@pytest.mark.django_db
def test_launch_form_shows_the_error_on_its_field(client):
    client.force_login(UserFactory(username="boss", role="admin"))
    form = {
        "method": "rejection_sampling",
        "rs_num_samples": 2,
        "ppo_steps": 1,
        "ppo_kl_coef": 0.01,
        "max_prompts": 8,
        "next_batch_prompts": 3,
        "temperature_a": 0.7,
        "temperature_b": 99,
        "accept_min_win_rate": 0,
    }
    form["batches"] = [BatchFactory(status=Batch.Status.FROZEN).pk]
    response = client.post("/rlhf/iterations/launch/", form)
    assert response.status_code == 400
    page = response.content.decode()
    assert "less than or equal to 10" in page and "(got 99.0)" in page
    assert Iteration.objects.count() == 0
    # the form's own bounds come from the same settings (PPO steps >= 1)
    response = client.post("/rlhf/iterations/launch/", {**form, "temperature_b": 1, "ppo_steps": 0})
    assert response.status_code == 400 and Iteration.objects.count() == 0
    # the inference server: http(s) only, the error on its field
    bad = {**form, "temperature_b": 1, "server_url": "file:///etc/passwd"}
    response = client.post("/rlhf/iterations/launch/", bad)
    assert response.status_code == 400 and Iteration.objects.count() == 0
    assert "must be an http:// or https:// URL" in response.content.decode()


@pytest.mark.django_db
def test_command_names_the_field():
    with pytest.raises(CommandError, match=r"settings\.ppo\.kl_coef: Input should be greater"):
        call_command("pairwise_iteration", "--set", "ppo.kl_coef=-1", "--queue", stdout=StringIO())
    with pytest.raises(CommandError, match=r"settings\.ppo_steps: renamed to ppo\.steps"):
        call_command("pairwise_iteration", "--set", "ppo_steps=8", "--queue", stdout=StringIO())
    assert Iteration.objects.count() == 0


# --- stored flat settings ------------------------------------------------------------------


FLAT = {
    "max_prompts": 8,
    "eval_fraction": 0.25,
    "rs_num_samples": 2,
    "rs_temperature": 1.1,
    "rs_epochs": 3,
    "rs_learning_rate": 1e-5,
    "ppo_steps": 5,
    "ppo_rollout_batch_size": 4,
    "ppo_mini_batch_size": 2,
    "ppo_learning_rate": 2e-6,
    "ppo_kl_coef": 0.02,
    "ppo_adaptive_kl": True,
    "ppo_target_kl": 3.0,
    "max_new_tokens": 8,
    "accept_min_win_rate": 0.0,
    "next_batch_prompts": 4,
    "next_batch_temperatures": [0.5, 0.9],
    "next_batch_versus_previous": False,
    "next_batch_server_url": "",
    "reward_helpfulness_path": "/m/rm-h",
    "reward_safety_path": "/m/rm-s",
    "reward_training": {"batch_size": 4},
    "seed": 3,
}


@pytest.mark.django_db
def test_migration_nests_stored_flat_settings_losing_nothing():
    from django.apps import apps

    from modeling.models import ModelKind, ModelVersion

    migration = importlib.import_module("rlhf.migrations.0004_iteration_settings_nested")
    iteration = Iteration.objects.create(
        number=1, config=FLAT, start_policy_name="base", start_policy_path="/m/base"
    )
    policy = ModelVersion.objects.create(
        name="RLHF-V1",
        kind=ModelKind.POLICY,
        path="/m/p",
        config={"method": "both", "iteration": FLAT},
    )
    renamed = importlib.import_module("rlhf.migrations.0006_sampling_server_url")
    migration.forwards(apps, None)
    renamed.forwards(apps, None)
    iteration.refresh_from_db()
    policy.refresh_from_db()
    assert policy.config["iteration"] == iteration.config
    settings = IterationSettings.from_json(iteration.config)
    assert settings.rejection_sampling == RejectionSamplingConfig(
        num_samples=2, temperature=1.1, epochs=3, learning_rate=1e-5, max_new_tokens=8, seed=3
    )
    assert (settings.ppo.steps, settings.ppo.rollout_batch_size, settings.ppo.mini_batch_size) == (
        5,
        4,
        2,
    )
    assert (settings.ppo.learning_rate, settings.ppo.kl_coef, settings.ppo.target_kl) == (
        2e-6,
        0.02,
        3.0,
    )
    assert settings.ppo.adaptive_kl and settings.sampling.max_new_tokens == 8
    assert settings.next_batch_temperatures == (0.5, 0.9) and settings.reward_training == {
        "batch_size": 4
    }
    migration.forwards(apps, None)  # twice: nothing changes
    renamed.forwards(apps, None)
    assert Iteration.objects.get().config == iteration.config
    renamed.backwards(apps, None)
    migration.backwards(apps, None)
    assert Iteration.objects.get().config == FLAT
