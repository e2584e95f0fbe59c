"""GRPOTrainer (and RLOO through it) on the tiny Llama: a toy task with a known optimum,
resume after a kill, LoRA, and bad input. CPU, a few seconds each."""

from __future__ import annotations

import shutil

import pytest
import torch

from rlhf.ml.grpo.config import GRPOConfig, rloo_config
from rlhf.ml.grpo.trainer import GRPOTrainer, PromptCycle
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.prompts import PromptExample
from rlhf.ml.train_state import TrainState

PROMPTS = [
    PromptExample(({"role": "user", "content": f"tell me about {w}"},), safety_tagged=i % 2 == 1)
    for i, w in enumerate(["egg", "water", "time", "day", "way", "thing"])
]
# the toy task: one point per "yes" in the response; its optimum is a response of only "yes"
TOY = {"prompts_per_step": 4, "group_size": 4, "max_new_tokens": 8, "mini_batch_size": 16}


def count_yes(contexts, responses, tags):
    return [float(r.split().count("yes")) for r in responses]


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def toy_runs(tiny_policy_dir):
    """30 steps of GRPO and of RLOO at β = 0.04, and GRPO at β = 1, from the same start."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runs = {}
    for name, config in [
        ("grpo", GRPOConfig(steps=30, learning_rate=1e-2, kl_coef=0.04, **TOY)),
        ("rloo", rloo_config(steps=30, learning_rate=1e-2, kl_coef=0.04, **TOY)),
        ("grpo_strong_kl", GRPOConfig(steps=30, learning_rate=1e-2, kl_coef=1.0, **TOY)),
    ]:
        model = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
        tokenizer = AutoTokenizer.from_pretrained(tiny_policy_dir)
        runs[name] = GRPOTrainer(model, tokenizer, config, reward=count_yes).train(PROMPTS)
    return runs


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_toy_task_reward_rises_while_the_kl_stays_bounded(toy_runs, method):
    history = toy_runs[method]
    assert [row["step"] for row in history] == list(range(1, 31))
    first = sum(row["reward"] for row in history[:5]) / 5
    last = sum(row["reward"] for row in history[-5:]) / 5
    assert first < 1.0  # a random policy says "yes" about once in 70 tokens
    assert last > 3.0 and last > 3 * first
    kls = [row["kl"] for row in history]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # the first step samples the reference
    assert all(0.0 <= kl < 10.0 for kl in kls)  # finite, about log |vocab| at most


def test_a_larger_beta_keeps_the_policy_closer_to_the_reference(toy_runs):
    weak = sum(row["kl"] for row in toy_runs["grpo"][-5:]) / 5
    strong = sum(row["kl"] for row in toy_runs["grpo_strong_kl"][-5:]) / 5
    assert strong < 0.5 * weak
    assert strong < 0.5


def test_step_reports_what_the_stage_plots(tiny_policy):
    model, tokenizer = tiny_policy
    config = GRPOConfig(
        steps=2, updates_per_step=2, learning_rate=1e-3, **{**TOY, "mini_batch_size": 6}
    )
    seen = []
    history = GRPOTrainer(model, tokenizer, config, reward=count_yes).train(
        PROMPTS, on_step=seen.append
    )
    assert seen == history and [r["step"] for r in history] == [1, 2]
    row = history[0]
    assert {"step", "total", "loss", "reward", "reward_std", "kl", "clip_fraction"} <= set(row)
    assert row["total"] == 2
    assert 1.0 <= row["response_length"] <= 8.0
    assert set(row["timings"]) == {"generation", "reward", "forward", "train"}
    assert row["seconds"] >= sum(row["timings"].values())
    # μ = 2 passes over 3 mini-batches: the later updates are off-policy, so the KL moves
    assert row["kl"] > 0.0


def _run(policy_dir, config, state=None, on_step=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    trainer = GRPOTrainer(model, tokenizer, config, reward=count_yes)
    return trainer, trainer.train(PROMPTS, state=state, on_step=on_step)


@pytest.mark.parametrize("lora", [0, 4])
def test_a_killed_run_resumes_to_the_same_weights(tiny_policy_dir, tmp_path, lora):
    config = GRPOConfig(
        steps=5,
        learning_rate=1e-2,
        checkpoint_every=2,
        updates_per_step=2,
        lora={"rank": lora},
        **{**TOY, "prompts_per_step": 4, "mini_batch_size": 8},  # 4 prompts of 6: the cycle wraps
    )
    whole, whole_history = _run(tiny_policy_dir, config)

    def killed_at_step_4(row):
        if row["step"] == 4:
            raise KeyboardInterrupt  # the worker dies after step 4, before any save of it

    state = TrainState(tmp_path / "state", every=config.checkpoint_every)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_policy_dir, config, state=state, on_step=killed_at_step_4)
    assert state.path is not None and state.path.is_file()

    resumed, history = _run(tiny_policy_dir, config, state=TrainState(tmp_path / "state", every=2))
    assert [row["step"] for row in history] == [3, 4, 5]
    assert [row["reward"] for row in history] == [row["reward"] for row in whole_history[2:]]
    a, b = _params(whole.lm), _params(resumed.lm)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[n], b[n]) for n in a)
    # and training did move the weights away from the start
    start, _ = _run(
        tiny_policy_dir, GRPOConfig(steps=1, learning_rate=1e-9, lora={"rank": lora}, **TOY)
    )
    assert any(
        not torch.allclose(a[n], p) for n, p in _params(start.lm).items() if "lora" in n or not lora
    )


def test_prompt_cycle_state_refuses_another_prompt_set():
    cycle = PromptCycle(6, seed=0)
    first = cycle.take(4)
    assert len(set(first)) == 4
    saved = cycle.state()
    again = PromptCycle(6, seed=0)
    again.load(saved)
    assert again.take(8) == cycle.take(8)
    with pytest.raises(ValueError, match="6 prompts, not 5"):
        PromptCycle(5, seed=0).load(saved)


def test_lora_run_trains_adapters_and_saves_a_plain_merged_model(tiny_policy_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from modeling.ml.lora import AdaptersOff

    config = GRPOConfig(steps=3, learning_rate=1e-2, lora={"rank": 4}, **TOY)
    trainer, history = _run(tiny_policy_dir, config)
    assert isinstance(trainer.reference, AdaptersOff)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # adapters start at zero
    assert history[-1]["kl"] > 0.0
    out = trainer.save(tmp_path / "policy")
    assert not (tmp_path / "policy.partial").exists()
    saved = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    names = [n for n, _ in saved.named_parameters()]
    assert not any("lora" in n for n in names)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(saved.get_parameter(q), base.get_parameter(q))
    assert (out / "tokenizer.json").is_file() or (out / "tokenizer_config.json").is_file()


def test_from_pretrained_refuses_a_reference_on_another_tokenizer(tiny_policy_dir, tmp_path):
    from transformers import AutoTokenizer

    other = tmp_path / "other"
    shutil.copytree(tiny_policy_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["zebra"])
    tokenizer.save_pretrained(other)
    with pytest.raises(ValueError, match="different tokenizer"):
        GRPOTrainer.from_pretrained(
            tiny_policy_dir, GRPOConfig(**TOY), reward=count_yes, reference_path=other, device="cpu"
        )
    trainer = GRPOTrainer.from_pretrained(
        tiny_policy_dir,
        GRPOConfig(**TOY),
        reward=count_yes,
        reference_path=tiny_policy_dir,
        device="cpu",
    )
    assert trainer.reference is not trainer.lm
    assert not any(p.requires_grad for p in trainer.reference.parameters())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"group_size": 1}, "group_size"),
        ({"kl_coef": -0.1}, "kl_coef"),
        ({"clip_range": 0.0}, "clip_range"),
        ({"temperature": 0.0}, "temperature"),
        ({"baseline": "mean"}, "baseline"),
        ({"loss_normalisation": "batch"}, "loss_normalisation"),
    ],
)
def test_bad_config_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        GRPOConfig(**overrides)


def test_rloo_config_is_grpo_with_the_leave_one_out_baseline():
    config = rloo_config(group_size=8)
    assert (config.baseline, config.scale_rewards, config.group_size) == (
        "leave_one_out",
        "none",
        8,
    )
    assert config.method == "rloo" and GRPOConfig().method == "grpo"


def test_bad_input_is_refused(tiny_policy):
    model, tokenizer = tiny_policy
    with pytest.raises(ValueError, match="reward function"):
        GRPOTrainer(model, tokenizer, GRPOConfig(**TOY))
    trainer = GRPOTrainer(model, tokenizer, GRPOConfig(steps=1, **TOY), reward=count_yes)
    with pytest.raises(ValueError, match="prompt set is empty"):
        trainer.train([])
    other = AutoModelWithVocab(len(tokenizer) + 5)
    with pytest.raises(ValueError, match="vocabulary"):
        GRPOTrainer(model, tokenizer, GRPOConfig(**TOY), reward=count_yes, reference=other)


def AutoModelWithVocab(vocab_size):  # noqa: N802 - reads as the model it makes
    from rlhf.ml.tiny import make_tiny_policy

    model, _ = make_tiny_policy()
    model.resize_token_embeddings(vocab_size)
    return model


def test_non_finite_reward_and_loss_name_the_step(tiny_policy):
    model, tokenizer = tiny_policy

    def nan_reward(contexts, responses, tags):
        return [float("nan")] * len(responses)

    trainer = GRPOTrainer(model, tokenizer, GRPOConfig(steps=2, **TOY), reward=nan_reward)
    with pytest.raises(NonFiniteError, match="step 1"):
        trainer.train(PROMPTS)

    broken = AutoModelWithVocab(len(tokenizer))
    with torch.no_grad():
        broken.lm_head.weight.fill_(float("nan"))  # a reference whose log-probabilities are NaN
    trainer = GRPOTrainer(
        model, tokenizer, GRPOConfig(steps=2, **TOY), reward=count_yes, reference=broken
    )
    with pytest.raises(NonFiniteError, match="loss became nan at step 1"):
        trainer.train(PROMPTS)
