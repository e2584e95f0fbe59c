"""GRPO/RLOO losses: hand-computed values on tiny tensors, and TRL 1.16 as the oracle.

TRL's per-token loss is called unbound (``GRPOTrainer._compute_loss`` with a small object
holding the attributes it reads and our log-probabilities as the model's); its advantages
come out of a real ``GRPOTrainer``/``RLOOTrainer`` on a tiny model with a reward function
that returns preset rewards.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhf.ml.grpo.losses import group_advantages, k3_kl, policy_loss

# --- group advantages, by hand -------------------------------------------------------------


def test_group_advantages_grpo_divides_by_the_bessel_std():
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    std = math.sqrt(4 * 0.25 / 3)  # Bessel-corrected: Σ(r−0.5)² / (G−1)
    expected = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.5 / (std + 1e-4)]
    assert adv[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_group_advantages_dr_grpo_leaves_the_difference_unscaled():
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 8.0]]), scale="none")
    assert adv.view(-1).tolist() == pytest.approx([-1.0, 0.0, 1.0, -1.0, -1.0, 2.0])


def test_group_advantages_leave_one_out():
    # r_i − mean of the others: 1 − 2.5, 2 − 2, 3 − 1.5
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0]]), baseline="leave_one_out", scale="none")
    assert adv[0].tolist() == pytest.approx([-1.5, 0.0, 1.5])


def test_a_group_of_equal_rewards_has_no_advantage():
    adv = group_advantages(torch.tensor([[0.7, 0.7, 0.7, 0.7]]))
    assert adv.abs().max().item() < 1e-6
    adv = group_advantages(torch.tensor([[0.7, 0.7]]), baseline="leave_one_out", scale="none")
    assert adv.abs().max().item() < 1e-6


@pytest.mark.parametrize(
    ("rewards", "kwargs", "message"),
    [
        (torch.tensor([[1.0], [2.0]]), {}, "at least 2 samples"),
        (torch.tensor([1.0, 2.0]), {}, "prompts, group size"),
        (torch.tensor([[1.0, 2.0]]), {"baseline": "mean"}, "baseline must be"),
        (torch.tensor([[1.0, 2.0]]), {"scale": "batch"}, "scale must be"),
    ],
)
def test_group_advantages_refuses_bad_input(rewards, kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_advantages(rewards, **kwargs)


# --- policy loss, by hand ------------------------------------------------------------------

MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # a 2-token and a 1-token response
ADV = torch.tensor([2.0, -1.0])


def _loss(logprobs, old, ref, **kwargs):
    defaults = {"clip_range": 0.2, "kl_coef": 0.0, "normalisation": "token", "max_tokens": 4}
    return policy_loss(logprobs, old, ref, ADV, MASK, **{**defaults, **kwargs})


@pytest.mark.parametrize(
    ("normalisation", "expected"),
    [
        ("token", (-2 - 2 + 1) / 3),  # DAPO: every token weighs the same
        ("sequence", (-2 + 1) / 2),  # GRPO: mean per response, then over responses
        ("constant", (-2 - 2 + 1) / (2 * 4)),  # Dr. GRPO: / (B · max_tokens)
    ],
)
def test_policy_loss_normalisations_on_policy(normalisation, expected):
    lp = torch.full((2, 2), -1.0)
    loss, stats = _loss(lp, lp, lp, normalisation=normalisation)
    assert loss.item() == pytest.approx(expected)
    assert stats["clip_fraction"].item() == 0.0
    assert stats["kl"].item() == 0.0


def test_policy_loss_clips_the_ratio_where_it_matters():
    old = torch.full((2, 2), -1.0)
    # response 0: ρ = 1.5 with Â = 2 > 0 → clipped to 1.2; response 1: ρ = 0.5 with Â = −1 → 0.8
    lp = old + torch.log(torch.tensor([[1.5, 1.5], [0.5, 0.5]]))
    lp.requires_grad_(True)
    loss, stats = _loss(lp, old, lp.detach())
    assert loss.item() == pytest.approx((-2.4 * 2 + 0.8) / 3)
    assert stats["clip_fraction"].item() == pytest.approx(1.0)
    loss.backward()
    assert lp.grad is not None and lp.grad.abs().max().item() == 0.0  # clipped: no gradient

    # DAPO's decoupled upper clip 1 + 0.6 leaves ρ = 1.5 alone
    loss, stats = _loss(lp.detach(), old, lp.detach(), clip_range_high=0.6)
    assert loss.item() == pytest.approx((-3.0 * 2 + 0.8) / 3)
    assert stats["clip_fraction"].item() == pytest.approx(1 / 3)


def test_policy_loss_keeps_the_gradient_of_a_pessimistic_ratio():
    # ρ = 1.5 with Â = −1: min(−1.5, −1.2) = −1.5 is the unclipped term, so it still pushes down
    old = torch.full((2, 2), -1.0)
    lp = (old + math.log(1.5)).requires_grad_(True)
    loss, stats = policy_loss(
        lp, old, lp.detach(), torch.tensor([-1.0, -1.0]), MASK, clip_range=0.2, kl_coef=0.0
    )
    assert loss.item() == pytest.approx(1.5)
    assert stats["clip_fraction"].item() == 0.0
    loss.backward()
    assert lp.grad is not None
    assert lp.grad[0, 0].item() == pytest.approx(1.5 / 3)  # d(ρ)/d(log π) = ρ, / 3 tokens
    assert lp.grad[1, 1].item() == 0.0  # masked out


def test_policy_loss_adds_beta_times_the_k3_kl():
    lp = torch.full((2, 2), -1.0)
    ref = lp + math.log(2.0)  # π_ref/π = 2: k3 = 2 − log 2 − 1
    k3 = 2.0 - math.log(2.0) - 1.0
    assert k3_kl(lp, ref)[0, 0].item() == pytest.approx(k3)
    assert k3_kl(lp, lp - 3.0).min().item() >= 0.0
    loss, stats = policy_loss(
        lp, lp, ref, torch.zeros(2), MASK, clip_range=0.2, kl_coef=0.1, normalisation="token"
    )
    assert loss.item() == pytest.approx(0.1 * k3)
    assert stats["kl"].item() == pytest.approx(k3)


def test_policy_loss_refuses_bad_settings():
    lp = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="max_tokens"):
        _loss(lp, lp, lp, normalisation="constant", max_tokens=None)
    with pytest.raises(ValueError, match="normalisation must be"):
        _loss(lp, lp, lp, normalisation="mean")


# --- TRL 1.16 as the oracle ----------------------------------------------------------------


class _SingleProcess:
    num_processes = 1

    def reduce(self, x, reduction):
        return x

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x


def _trl_self(loss_type, logprobs, *, beta, eps, eps_high, max_completion_length):
    """What ``GRPOTrainer._compute_loss``/``RLOOTrainer._compute_loss`` read from ``self``,
    with ``logprobs`` standing in for the model's per-token log-probabilities."""
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (
            logprobs,
            torch.zeros_like(logprobs),
            None,
        ),
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        loss_type=loss_type,
        epsilon_low=eps,
        epsilon_high=eps_high,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=max_completion_length,
        accelerator=_SingleProcess(),
        _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list)},
    )


def _trl_inputs(mask, **tensors):
    b, t = mask.shape
    return {
        "prompt_ids": torch.zeros(b, 3, dtype=torch.long),
        "prompt_mask": torch.ones(b, 3, dtype=torch.long),
        "completion_ids": torch.zeros(b, t, dtype=torch.long),
        "completion_mask": mask.long(),
        **tensors,
    }


def _random_batch(seed, b=6, t=7):
    g = torch.Generator().manual_seed(seed)
    logprobs = torch.randn(b, t, generator=g) * 0.5 - 2.0
    old = logprobs + torch.randn(b, t, generator=g) * 0.3  # far enough for ratios to clip
    ref = logprobs + torch.randn(b, t, generator=g) * 0.3
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).float()
    return logprobs, old, ref, torch.randn(b, generator=g), mask


@pytest.mark.parametrize(
    ("loss_type", "normalisation"),
    [("grpo", "sequence"), ("bnpo", "token"), ("dapo", "token"), ("dr_grpo", "constant")],
)
@pytest.mark.parametrize(("beta", "eps_high"), [(0.04, 0.2), (0.0, 0.28)])
def test_policy_loss_equals_trl(loss_type, normalisation, beta, eps_high):
    from trl.trainer.grpo_trainer import GRPOTrainer

    for seed in range(3):
        logprobs, old, ref, adv, mask = _random_batch(seed)
        theirs_lp = logprobs.clone().requires_grad_(True)
        trl = _trl_self(
            loss_type,
            theirs_lp,
            beta=beta,
            eps=0.2,
            eps_high=eps_high,
            max_completion_length=mask.shape[1],
        )
        inputs = _trl_inputs(
            mask,
            advantages=adv,
            old_per_token_logps=old,
            ref_per_token_logps=ref,
            num_items_in_batch=mask.sum(),  # DAPO: the tokens of the (one) generation batch
        )
        theirs = GRPOTrainer._compute_loss(trl, None, inputs)
        theirs.backward()

        ours_lp = logprobs.clone().requires_grad_(True)
        ours, stats = policy_loss(
            ours_lp,
            old,
            ref,
            adv,
            mask,
            clip_range=0.2,
            clip_range_high=eps_high,
            kl_coef=beta,
            normalisation=normalisation,
            max_tokens=mask.shape[1],
        )
        ours.backward()
        metrics = trl._metrics["train"]
        assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
        assert torch.allclose(ours_lp.grad, theirs_lp.grad, atol=1e-6)
        assert stats["clip_fraction"].item() == pytest.approx(
            metrics["clip_ratio/region_mean"][0], abs=1e-6
        )
        if beta:
            assert stats["kl"].item() == pytest.approx(metrics["kl"][0], abs=1e-6)
    # the batches did exercise the clip
    assert metrics["clip_ratio/region_mean"][0] > 0


def test_rloo_loss_equals_trl_on_one_token_responses():
    """TRL's RLOO clips a sequence-level ratio and puts the KL into the reward; with one
    token per response and β = 0 its loss is ours with the per-sequence normalisation."""
    from trl.trainer.rloo_trainer import RLOOTrainer

    logprobs, old, ref, adv, _ = _random_batch(7, b=8, t=1)
    mask = torch.ones(8, 1)
    theirs_lp = logprobs.clone().requires_grad_(True)
    trl = _trl_self("rloo", theirs_lp, beta=0.0, eps=0.2, eps_high=0.2, max_completion_length=1)
    theirs = RLOOTrainer._compute_loss(
        trl, None, _trl_inputs(mask, advantages=adv, old_logps=old.squeeze(1))
    )
    theirs.backward()
    ours_lp = logprobs.clone().requires_grad_(True)
    ours, stats = policy_loss(
        ours_lp, old, ref, adv, mask, clip_range=0.2, kl_coef=0.0, normalisation="sequence"
    )
    ours.backward()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert torch.allclose(ours_lp.grad, theirs_lp.grad, atol=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(
        trl._metrics["train"]["clip_ratio/region_mean"][0], abs=1e-6
    )


@pytest.fixture(scope="module")
def trl_advantages(tmp_path_factory):
    """TRL's advantages for preset rewards: GRPO (scaled, unscaled) and RLOO, from real
    trainers on a tiny model (β = 0, so RLOO's reward is the preset one)."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from rlhf.ml.tiny import make_tiny_policy

    model, tokenizer = make_tiny_policy(hidden=16, layers=1)
    prompts, group = 3, 4
    rewards = torch.randn(prompts * group, generator=torch.Generator().manual_seed(3))
    rewards[group : 2 * group] = 0.5  # one group where every sample scores the same

    def preset(prompts, completions, **kwargs):
        return rewards.tolist()

    data = Dataset.from_list([{"prompt": f"tell me about {w}"} for w in ("egg", "water", "time")])
    common = {
        "output_dir": str(tmp_path_factory.mktemp("trl")),
        "per_device_train_batch_size": prompts * group,
        "num_generations": group,
        "max_completion_length": 3,
        "beta": 0.0,
        "report_to": [],
        "use_cpu": True,
        "save_strategy": "no",
    }
    out = {}
    for name, trainer_cls, args in [
        ("group_std", GRPOTrainer, GRPOConfig(scale_rewards="group", **common)),
        ("group_none", GRPOTrainer, GRPOConfig(scale_rewards="none", **common)),
        ("leave_one_out_none", RLOOTrainer, RLOOConfig(**common)),
    ]:
        trainer = trainer_cls(
            model=model,
            reward_funcs=preset,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
        )
        rows = [{"prompt": data[i // group]["prompt"]} for i in range(prompts * group)]
        out[name] = trainer._generate_and_score_completions(rows)["advantages"]
    return rewards.view(prompts, group), out


@pytest.mark.parametrize(
    ("name", "baseline", "scale"),
    [
        ("group_std", "group", "std"),
        ("group_none", "group", "none"),
        ("leave_one_out_none", "leave_one_out", "none"),
    ],
)
def test_group_advantages_equal_trl(trl_advantages, name, baseline, scale):
    rewards, theirs = trl_advantages
    ours = group_advantages(rewards, baseline=baseline, scale=scale).view(-1)
    assert torch.allclose(ours, theirs[name].float(), atol=1e-6)
    assert theirs[name].abs().max().item() > 0.1  # not vacuous
