"""PPO: losses against hand-computed values, KL control, NaN handling, and a toy problem
with a known optimum where reward rises while the KL stays near its budget."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf.ml.ppo.config import PPOConfig
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.ppo.kl import AdaptiveKLController, FixedKLController
from rlhf.ml.ppo.losses import clipped_surrogate_loss, clipped_value_loss, gae
from rlhf.ml.ppo.trainer import PPOTrainer
from rlhf.ml.prompts import PromptExample

PROMPTS = [
    PromptExample(({"role": "user", "content": f"tell me about {w}"},))
    for w in ["egg", "water", "time", "day", "way", "thing"]
]


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # δ1 = 1 + 0 − 0.2 = 0.8 ; δ0 = 0 + 0.2 − 0.5 = −0.3 ; Â0 = −0.3 + 0.5·0.8 = 0.1
    assert adv.tolist()[0] == pytest.approx([0.1, 0.8, 0.0])
    assert ret.tolist()[0] == pytest.approx([0.6, 1.0, 0.0])


def test_clipped_surrogate_by_hand():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.9]]))  # ratios 1.5 (clipped to 1.2) and 0.9
    adv = torch.tensor([[1.0, -1.0]])
    loss, clip_fraction = clipped_surrogate_loss(new, old, adv, torch.ones(1, 2), clip_range=0.2)
    # token 0: min(1.5, 1.2)·1 = 1.2 ; token 1: min(−0.9, −0.9) = −0.9 ; loss = −(1.2 − 0.9)/2
    assert loss.item() == pytest.approx(-0.15)
    assert clip_fraction.item() == pytest.approx(0.5)


def test_clipped_value_loss_by_hand():
    loss = clipped_value_loss(
        torch.tensor([[2.0]]),
        torch.tensor([[0.0]]),
        torch.tensor([[1.0]]),
        torch.ones(1, 1),
        clip_range=0.5,
    )
    # unclipped (2−1)² = 1, clipped (0.5−1)² = 0.25 → ½·max = 0.5
    assert loss.item() == pytest.approx(0.5)


def test_kl_controllers():
    fixed = FixedKLController(0.01)
    fixed.update(100.0, 64)
    assert fixed.value == 0.01
    adaptive = AdaptiveKLController(0.1, target=4.0, horizon=100)
    adaptive.update(8.0, 50)  # error clipped to +0.2 → β · (1 + 0.2·0.5)
    assert adaptive.value == pytest.approx(0.11)
    adaptive.update(0.0, 50)  # −0.2
    assert adaptive.value == pytest.approx(0.11 * 0.9)


def test_nan_reward_stops_with_a_clear_error(tiny_policy):
    model, tokenizer = tiny_policy
    trainer = PPOTrainer(
        model,
        tokenizer,
        lambda c, r, t: [math.nan] * len(r),
        PPOConfig(rollout_batch_size=2, mini_batch_size=2, max_new_tokens=4),
    )
    with pytest.raises(NonFiniteError, match="NaN"):
        trainer.train(PROMPTS, steps=1)


def test_one_step_logs_everything_and_changes_the_policy_not_the_reference(tiny_policy, tmp_path):
    model, tokenizer = tiny_policy
    trainer = PPOTrainer(
        model,
        tokenizer,
        lambda c, r, t: [float(len(x)) for x in r],
        PPOConfig(rollout_batch_size=4, mini_batch_size=2, max_new_tokens=6, learning_rate=1e-3),
    )
    ref_before = [p.clone() for p in trainer.ref_lm.parameters()]
    before = [p.clone() for p in trainer.policy.lm.parameters()]
    stats = trainer.train(PROMPTS, steps=1).final
    for name in ("reward", "kl", "entropy", "policy_loss", "value_loss", "clip_fraction"):
        assert math.isfinite(getattr(stats, name)), name
    assert stats.kl == pytest.approx(0.0, abs=1e-4)  # the first rollout is sampled from π = π_ref
    assert {"generation", "reward", "forward", "train"} <= set(stats.timings)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trainer.policy.lm.parameters(), strict=True)
    )
    assert all(
        torch.equal(a, b) for a, b in zip(ref_before, trainer.ref_lm.parameters(), strict=True)
    )
    saved = trainer.save(tmp_path / "policy")
    assert (saved / "value_head.pt").exists() and not (tmp_path / "policy.partial").exists()


@pytest.mark.slow
def test_toy_reward_rises_and_kl_stays_near_budget():
    """Reward: the share of the 8 response tokens that are "yes" (optimum 1.0, one token).
    The adaptive controller keeps KL(π‖π_ref) near its 4-nat budget."""
    from rlhf.ml.tiny import make_tiny_policy

    torch.set_num_threads(2)
    model, tokenizer = make_tiny_policy(seed=0)
    config = PPOConfig(
        learning_rate=3e-3,
        rollout_batch_size=32,
        mini_batch_size=8,
        ppo_epochs=2,
        max_new_tokens=8,
        kl_coef=0.2,
        adaptive_kl=True,
        target_kl=TARGET_KL,
        kl_horizon=128,
        logit_of_squashed_score=False,
        seed=0,
    )
    trainer = PPOTrainer(
        model, tokenizer, lambda c, r, t: [x.split().count("yes") / 8 for x in r], config
    )
    steps = trainer.train(PROMPTS, steps=TOY_STEPS).steps
    first = sum(s.reward for s in steps[:5]) / 5
    last = sum(s.reward for s in steps[-5:]) / 5
    late_kl = sum(s.kl for s in steps[-5:]) / 5
    assert last > first + 0.1, [round(s.reward, 3) for s in steps]
    assert late_kl < 2.5 * TARGET_KL, [round(s.kl, 2) for s in steps]


TARGET_KL = 4.0
TOY_STEPS = 40
