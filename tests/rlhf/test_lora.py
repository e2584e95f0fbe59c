"""LoRA for the policy methods: PPO's reference is the policy's own weights with the
adapters off, only adapters (and the value head) train, and the policy written is a plain
merged checkpoint that loads and generates; bad target modules fail clearly."""

from __future__ import annotations

import math

import pytest
import torch

from modeling.ml.lora import LoraConfig, LoraTargetError
from rlhf.ml.generation.base import SamplingParams
from rlhf.ml.generation.local import LocalGenerator
from rlhf.ml.ppo.config import PPOConfig
from rlhf.ml.ppo.trainer import PPOTrainer
from rlhf.ml.rejection_sampling.config import RejectionSamplingConfig
from rlhf.ml.rejection_sampling.run import run_rejection_sampling
from tests.rlhf.test_ppo import PROMPTS

LORA = LoraConfig(rank=4, alpha=8, target_modules=("q_proj", "v_proj"))


def length_reward(contexts, responses, tags):
    return [float(len(r)) for r in responses]


def test_lora_ppo_one_copy_of_the_weights_and_a_merged_policy(tiny_policy, tmp_path):
    model, tokenizer = tiny_policy
    weights_before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = PPOTrainer(
        model,
        tokenizer,
        length_reward,
        PPOConfig(
            rollout_batch_size=4,
            mini_batch_size=2,
            max_new_tokens=6,
            learning_rate=1e-2,
            lora=LORA,
            gradient_checkpointing=True,
        ),
    )
    # The reference is the policy's own model (adapters off), not a copy.
    assert trainer.ref_lm.lm is trainer.policy.lm
    trainable = {n for n, p in trainer.policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head") for n in trainable)
    stats = trainer.train(PROMPTS, steps=2).steps
    assert all(math.isfinite(s.reward) and math.isfinite(s.kl) for s in stats)
    assert stats[0].kl == pytest.approx(0.0, abs=1e-4)  # first rollout: adapters start at zero
    assert stats[1].kl != pytest.approx(0.0, abs=1e-7)  # the adapters moved the policy
    # The base weights under the adapters never changed.
    lora_free = {
        k.replace(".base_layer", ""): v
        for k, v in trainer.policy.lm.state_dict().items()
        if "lora_" not in k
    }
    assert all(torch.equal(weights_before[k], lora_free[k]) for k in weights_before)

    saved = trainer.save(tmp_path / "policy")
    assert not list(saved.glob("adapter_*")), "adapters are merged, not saved apart"
    policy = LocalGenerator.load(saved)
    assert all("lora" not in n for n, _ in policy.model.named_parameters())
    merged = dict(policy.model.state_dict())
    assert any(not torch.equal(weights_before[k], merged[k]) for k in weights_before)
    result = policy.generate([PROMPTS[0].turns], SamplingParams(max_new_tokens=4, seed=0))
    assert len(result.samples) == 1 and result.samples[0][0].completion_tokens >= 1


def test_lora_rejection_sampling_writes_a_merged_policy_that_generates(tiny_policy, tmp_path):
    model, tokenizer = tiny_policy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = RejectionSamplingConfig(
        num_samples=2, max_new_tokens=6, epochs=1, batch_size=2, learning_rate=1e-2, lora=LORA
    )
    result = run_rejection_sampling(
        model, tokenizer, PROMPTS[:4], length_reward, config, tmp_path / "rs"
    )
    assert result.sft_losses and all(math.isfinite(x) for x in result.sft_losses)
    # ``model`` is plain again, its weights moved by the merged adapters.
    assert all("lora" not in k for k in model.state_dict())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    policy = LocalGenerator.load(tmp_path / "rs")
    out = policy.generate([PROMPTS[1].turns], SamplingParams(max_new_tokens=4, seed=1))
    assert out.samples[0][0].completion_tokens >= 1


def test_target_modules_the_model_lacks_fail_with_the_names_it_has(tiny_policy):
    model, tokenizer = tiny_policy
    bad = PPOConfig(lora=LoraConfig(rank=4, target_modules=("q_proj", "query")))
    with pytest.raises(LoraTargetError) as exc:
        PPOTrainer(model, tokenizer, length_reward, bad)
    message = str(exc.value)
    assert "query not found in the model" in message and "q_proj" in message.split(":")[-1]


@pytest.mark.django_db(transaction=True)
def test_a_lora_iteration_registers_a_merged_policy_that_loads_and_generates(rlhf_models):
    from modeling.models import ModelVersion
    from rlhf.models import Iteration
    from tests.rlhf.conftest import frozen_batch
    from tests.rlhf.test_iteration import launch

    lora = {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    iteration = launch(
        rlhf_models,
        [frozen_batch(6)],
        rejection_sampling={"num_samples": 2, "epochs": 1, "lora": lora},
        ppo={"steps": 2, "rollout_batch_size": 4, "mini_batch_size": 2, "lora": lora},
    )
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error
    ppo_stage = iteration.stages.get(name="ppo")
    assert ppo_stage.result["weights"] == "LoRA, merged"
    policy = ModelVersion.objects.get(name=iteration.policy_name)
    assert policy.lora["rank"] == 4 and policy.path == iteration.policy_path
    generator = LocalGenerator.load(policy.path)
    assert all("lora" not in n for n, _ in generator.model.named_parameters())
    out = generator.generate([PROMPTS[2].turns], SamplingParams(max_new_tokens=4, seed=2))
    assert out.samples[0][0].completion_tokens >= 1


@pytest.mark.django_db(transaction=True)
def test_lora_targets_the_policy_lacks_fail_the_stage_clearly(rlhf_models):
    from modeling.models import ModelVersion
    from rlhf.models import Iteration
    from tests.rlhf.conftest import frozen_batch
    from tests.rlhf.test_iteration import launch

    iteration = launch(
        rlhf_models,
        [frozen_batch(6)],
        method="ppo",
        ppo={
            "steps": 1,
            "rollout_batch_size": 4,
            "mini_batch_size": 2,
            "lora": {"rank": 4, "target_modules": ["c_attn"]},
        },
    )
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert "c_attn not found in the model" in iteration.error and "q_proj" in iteration.error
    assert not ModelVersion.objects.filter(kind="policy").exists()
