"""DPOTrainer on the tiny Llama: packing, a toy preference with a known optimum, resume,
bad input, LoRA, save, and online DPO's pairs."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from modeling.ml.chat import chat_for
from rlhf.ml.dpo.config import DPOConfig
from rlhf.ml.dpo.data import PreferencePair, dpo_batch, encode_preference_pairs
from rlhf.ml.dpo.online import OnlineDPO, best_worst_pairs, online_pairs
from rlhf.ml.dpo.trainer import (
    DPOTrainer,
    check_same_tokenizer,
    implicit_reward_accuracy,
    response_logps,
    sequence_logps,
)
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.prompts import PromptExample
from rlhf.ml.ranked import RankedSamples
from rlhf.ml.tiny import WORDS
from rlhf.ml.train_state import TrainState

OTHER = [w for w in WORDS if w != "egg"]


def egg_pairs(n: int, seed: int) -> list[PreferencePair]:
    """Pairs that always prefer the response starting with "egg" (same tail otherwise)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        turns = ({"role": "user", "content": " ".join(rng.choices(OTHER, k=rng.randint(2, 6)))},)
        tail = " ".join(rng.choices(OTHER, k=rng.randint(1, 4)))
        pairs.append(
            PreferencePair(turns, "egg " + tail, rng.choice(OTHER) + " " + tail, margin=1.0)
        )
    return pairs


def toy_config(**overrides) -> DPOConfig:
    base = {
        "beta": 0.1,
        "learning_rate": 3e-3,
        "batch_size": 8,
        "warmup_ratio": 0.0,
        "max_length": 64,
    }
    return DPOConfig(**{**base, **overrides})


def next_token_probs(model, tokenizer, pairs) -> torch.Tensor:
    """The policy's next-token distribution right after each pair's prompt."""
    fmt = chat_for(tokenizer)
    rows = []
    with torch.no_grad():
        for p in pairs:
            prompt, _ = fmt.encode_dialogue(p.turns, p.chosen)
            rows.append(torch.softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1], -1))
    return torch.stack(rows)


def test_packed_log_probs_equal_two_rows(tiny_policy):
    model, tokenizer = tiny_policy
    pairs = egg_pairs(5, seed=3)
    pairs[0] = PreferencePair(pairs[0].turns, "egg", "no yes thanks please help me")  # uneven
    encoded = encode_preference_pairs(tokenizer, pairs, max_length=64)
    packed, _ = response_logps(model, dpo_batch(encoded, pad_token_id=0, packed=True))
    rows, _ = response_logps(model, dpo_batch(encoded, pad_token_id=0, packed=False))
    torch.testing.assert_close(packed, rows, atol=1e-5, rtol=0)
    # and equal to scoring each response alone with the full model
    fmt = chat_for(tokenizer)
    prompt, response = fmt.encode_dialogue(pairs[0].turns, pairs[0].rejected)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1]
    alone = torch.log_softmax(logits, -1).gather(-1, torch.tensor(response)[:, None]).sum()
    assert packed[len(pairs)].item() == pytest.approx(alone.item(), abs=1e-5)


def test_prompt_is_cut_from_the_left(tiny_policy):
    _, tokenizer = tiny_policy
    long_prompt = ({"role": "user", "content": " ".join(["help"] * 40)},)
    pair = PreferencePair(long_prompt, "egg yes", "no")
    (enc,) = encode_preference_pairs(tokenizer, [pair], max_length=12)
    assert len(enc.chosen_ids) == 12  # the longer view fills the window
    full_prompt, chosen = chat_for(tokenizer).encode_dialogue(long_prompt, "egg yes")
    assert enc.chosen_ids[enc.shared :] == chosen  # the response survives whole
    assert enc.chosen_ids[: enc.shared] == full_prompt[-enc.shared :]  # the prompt's end


def test_toy_preference_moves_the_policy_and_kl_stays_bounded(tiny_policy):
    model, tokenizer = tiny_policy
    start = copy.deepcopy(model)
    train, held = egg_pairs(32, seed=0), egg_pairs(8, seed=1)
    reference = sequence_logps(model, tokenizer, held, max_length=64)
    p_before = next_token_probs(model, tokenizer, held)
    trainer = DPOTrainer(model, tokenizer, toy_config(epochs=4))
    steps = trainer.train(train)
    assert [s["step"] for s in steps] == list(range(1, 17)) and steps[-1]["total"] == 16
    # the reference is the starting weights: the first step's rewards are zero
    assert steps[0]["rewards/chosen"] == pytest.approx(0, abs=1e-6)
    assert steps[0]["loss"] == pytest.approx(0.693147, abs=1e-5)
    assert steps[-1]["rewards/margins"] > 0.2 and steps[-1]["loss"] < 0.6
    for key in (
        "rewards/rejected",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
        "seconds",
    ):
        assert key in steps[-1]
    after = sequence_logps(trainer.model, tokenizer, held, max_length=64)
    assert (after[:, 0] - after[:, 1]).mean() > (reference[:, 0] - reference[:, 1]).mean() + 0.5
    assert implicit_reward_accuracy(trainer.model, tokenizer, held, reference, max_length=64) == 1.0
    egg = tokenizer.convert_tokens_to_ids("egg")
    p_after = next_token_probs(trainer.model, tokenizer, held)
    assert p_after[:, egg].mean() > 2 * p_before[:, egg].mean()
    # KL(π‖π_start) of the next-token distribution: finite and small (β keeps it near)
    p_start = next_token_probs(start, tokenizer, held)
    kl = (p_after * (p_after.log() - p_start.log())).sum(-1).mean().item()
    assert 0 < kl < 0.5


def test_resume_gives_the_same_steps_and_weights(tiny_policy_dir, tmp_path):
    config = toy_config(epochs=2, checkpoint_every=1)
    pairs = egg_pairs(24, seed=2)

    def fresh() -> DPOTrainer:
        return DPOTrainer.from_pretrained(tiny_policy_dir, config, device="cpu")

    whole = fresh()
    uninterrupted = whole.train(pairs)

    class Killed(Exception):
        pass

    def kill_at_3(metrics: dict) -> None:
        if metrics["step"] == 3:
            raise Killed

    state = TrainState(tmp_path / "state", every=config.checkpoint_every)
    with pytest.raises(Killed):
        fresh().train(pairs, on_step=kill_at_3, state=state)
    resumed_trainer = fresh()
    resumed = resumed_trainer.train(pairs, state=TrainState(tmp_path / "state", every=1))
    # Killed while reporting step 3, before its state was saved: the state of step 2 resumes.
    assert [s["step"] for s in resumed] == list(range(3, 7))
    assert resumed[-1]["step"] == uninterrupted[-1]["step"] == 6
    assert resumed[-1]["loss"] == pytest.approx(uninterrupted[-1]["loss"], abs=1e-6)
    a, b = dict(whole.model.named_parameters()), dict(resumed_trainer.model.named_parameters())
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, atol=1e-6, rtol=0)
    assert any(
        (p - q).abs().max() > 1e-4
        for p, q in zip(a.values(), fresh().model.parameters(), strict=True)
    )


def test_nan_loss_names_the_step(tiny_policy):
    model, tokenizer = tiny_policy
    reference = copy.deepcopy(model)
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    trainer = DPOTrainer(model, tokenizer, toy_config(), reference=reference)
    with pytest.raises(NonFiniteError, match="at step 1 of 1"):
        trainer.train(egg_pairs(4, seed=0))


def test_non_finite_reference(tiny_policy):
    model, tokenizer = tiny_policy
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="reference model's log-probabilities"):
        DPOTrainer(model, tokenizer, toy_config()).train(egg_pairs(4, seed=0))


def test_bad_input(tiny_policy):
    model, tokenizer = tiny_policy
    with pytest.raises(ValueError, match="No preference pairs"):
        DPOTrainer(model, tokenizer, toy_config()).train([])
    for beta in (0.0, -1.0):
        with pytest.raises(ValueError, match="beta must be greater than 0"):
            DPOConfig(beta=beta)
    with pytest.raises(ValueError, match="at least 2 samples"):
        DPOConfig(num_samples=1)


def test_tokenizer_mismatch(tiny_policy, tiny_policy_dir, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    model, tokenizer = tiny_policy
    other = AutoTokenizer.from_pretrained(tiny_policy_dir)
    other.add_tokens(["zebra"])
    with pytest.raises(
        ValueError, match=r"reference model's tokenizer differs from the policy's \("
    ):
        check_same_tokenizer(tokenizer, other)
    check_same_tokenizer(tokenizer, AutoTokenizer.from_pretrained(tiny_policy_dir))
    big = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=100,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
        )
    )
    with pytest.raises(ValueError, match="embeddings for 100 tokens against"):
        DPOTrainer(model, tokenizer, toy_config(), reference=big)
    # from_pretrained with a reference folder on another tokenizer
    ref_dir = tmp_path / "ref"
    model.save_pretrained(ref_dir)
    other.save_pretrained(ref_dir)
    with pytest.raises(ValueError, match="vocabulary of"):
        DPOTrainer.from_pretrained(
            tiny_policy_dir, toy_config(), reference_path=ref_dir, device="cpu"
        )


def test_separate_reference_folder_and_ipo_with_nll(tiny_policy_dir):
    config = toy_config(loss_type="ipo", nll_weight=0.5, use_margin=True)
    trainer = DPOTrainer.from_pretrained(
        tiny_policy_dir, config, reference_path=tiny_policy_dir, device="cpu"
    )
    steps = trainer.train(egg_pairs(8, seed=4))
    assert steps[0]["rewards/chosen"] == pytest.approx(0, abs=1e-6)  # same weights as the reference
    assert steps[0]["nll_loss"] > 0
    # ipo's loss at h = 0 is ((1/2 + m)/β)², m = 1; plus the weighted NLL
    assert steps[0]["loss"] == pytest.approx(15.0**2 + 0.5 * steps[0]["nll_loss"], rel=1e-5)


def test_lora_run_and_save(tiny_policy, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = tiny_policy
    config = toy_config(lora={"rank": 4, "alpha": 8}, learning_rate=1e-2, epochs=2)
    trainer = DPOTrainer(model, tokenizer, config)
    steps = trainer.train(egg_pairs(16, seed=5))
    assert steps[0]["rewards/margins"] == pytest.approx(0, abs=1e-6)  # adapters off = start
    assert steps[-1]["rewards/margins"] > steps[0]["rewards/margins"]
    out = trainer.save(tmp_path / "policy")
    assert not (out / "adapter_config.json").exists() and (out / "tokenizer.json").exists()
    saved = AutoModelForCausalLM.from_pretrained(out)
    pairs = egg_pairs(4, seed=6)
    torch.testing.assert_close(
        sequence_logps(saved, tokenizer, pairs), sequence_logps(trainer.model, tokenizer, pairs)
    )


def test_online_pairs_skip_ties():
    prompt = PromptExample(({"role": "user", "content": "hello"},))
    ranked = [
        RankedSamples(prompt, ("best", "mid", "worst"), (2.0, 1.0, -1.0)),
        RankedSamples(prompt, ("a", "b"), (0.5, 0.5)),
    ]
    pairs, skipped = best_worst_pairs(ranked)
    assert skipped == 1
    assert pairs == [PreferencePair(prompt.turns, "best", "worst")]
    assert online_pairs(ranked) == pairs


def test_online_dpo_round(tiny_policy):
    model, tokenizer = tiny_policy
    config = toy_config(num_samples=4, max_new_tokens=6)
    prompts = [PromptExample(({"role": "user", "content": w},)) for w in ("hello", "help", "egg")]

    def count_eggs(contexts, responses, tags):
        return [float(len(r.split())) + r.count("egg") for r in responses]

    result = OnlineDPO(DPOTrainer(model, tokenizer, config), count_eggs).round(prompts)
    assert len(result.pairs) + result.skipped == 3 and result.pairs
    assert result.steps[-1]["step"] == 1 and set(result.seconds) == {"generation", "reward"}
    for pair in result.pairs:
        assert count_eggs([], [pair.chosen], []) > count_eggs([], [pair.rejected], [])


def test_saved_state_of_other_pairs_is_refused(tiny_policy_dir, tmp_path):
    config = toy_config(checkpoint_every=1)

    def stop(metrics: dict) -> None:
        if metrics["step"] == 2:  # step 1's state is saved (a step is reported, then saved)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        DPOTrainer.from_pretrained(tiny_policy_dir, config, device="cpu").train(
            egg_pairs(16, seed=7), on_step=stop, state=TrainState(tmp_path / "s", every=1)
        )
    with pytest.raises(ValueError, match="was made for other pairs"):
        DPOTrainer.from_pretrained(tiny_policy_dir, config, device="cpu").train(
            egg_pairs(16, seed=8), state=TrainState(tmp_path / "s", every=1)
        )
