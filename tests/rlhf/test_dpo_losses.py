"""The DPO family's losses: hand-computed values, and TRL 1.16's DPOTrainer as an oracle."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhf.ml.dpo.losses import dpo_loss

# One pair: policy log-ratios +0.5 (chosen) and −0.5 (rejected), so h = 1.
PC, PR, RC, RR = (torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.5))


def softplus(x: float) -> float:  # −log σ(−x)
    return math.log1p(math.exp(x))


def test_sigmoid_hand_value_and_rewards():
    losses, chosen, rejected = dpo_loss(PC, PR, RC, RR, beta=0.5)
    assert losses.item() == pytest.approx(softplus(-0.5))  # −log σ(0.5) = 0.474077
    assert losses.item() == pytest.approx(0.474077, abs=1e-6)
    assert chosen.item() == pytest.approx(0.25) and rejected.item() == pytest.approx(-0.25)


def test_margin_is_subtracted_inside():
    losses, _, _ = dpo_loss(PC, PR, RC, RR, beta=0.5, margin=torch.tensor([1.0]))
    assert losses.item() == pytest.approx(softplus(0.5))  # −log σ(0.5 − 1)


def test_conservative_dpo_label_smoothing():
    losses, _, _ = dpo_loss(PC, PR, RC, RR, beta=0.5, label_smoothing=0.1)
    assert losses.item() == pytest.approx(0.9 * softplus(-0.5) + 0.1 * softplus(0.5))


def test_robust_hand_value():
    losses, _, _ = dpo_loss(PC, PR, RC, RR, beta=0.5, loss_type="robust", label_smoothing=0.1)
    assert losses.item() == pytest.approx((0.9 * softplus(-0.5) - 0.1 * softplus(0.5)) / 0.8)
    plain, _, _ = dpo_loss(PC, PR, RC, RR, beta=0.5, loss_type="robust")
    assert plain.item() == pytest.approx(softplus(-0.5))  # ε = 0 is DPO


def test_ipo_sum_and_length_averaged():
    summed, _, _ = dpo_loss(PC, PR, RC, RR, beta=0.1, loss_type="ipo")
    assert summed.item() == pytest.approx((1.0 - 5.0) ** 2)  # (h − 1/(2τ))², τ = 0.1
    averaged, chosen, _ = dpo_loss(
        PC,
        PR,
        RC,
        RR,
        beta=0.1,
        loss_type="ipo",
        chosen_lengths=torch.tensor([2.0]),
        rejected_lengths=torch.tensor([4.0]),
    )
    assert averaged.item() == pytest.approx((0.5 / 2 + 0.5 / 4 - 5.0) ** 2)  # 21.390625
    assert chosen.item() == pytest.approx(0.05)  # rewards stay on the summed log-probs
    with_margin, _, _ = dpo_loss(
        PC, PR, RC, RR, beta=0.1, loss_type="ipo", margin=torch.tensor([0.2])
    )
    assert with_margin.item() == pytest.approx((1.0 - 0.7 / 0.1) ** 2)


def test_gradient_raises_chosen_and_lowers_rejected():
    pc, pr = PC.clone().requires_grad_(), PR.clone().requires_grad_()
    losses, _, _ = dpo_loss(pc, pr, RC, RR, beta=0.5)
    losses.sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": 0.0}, "beta must be greater than 0"),
        ({"beta": 0.1, "loss_type": "hinge"}, "Unknown DPO loss type 'hinge'"),
        ({"beta": 0.1, "label_smoothing": 0.5}, "label_smoothing must be in"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dpo_loss(PC, PR, RC, RR, **kwargs)


# --- TRL 1.16 as the oracle -------------------------------------------------------------


def trl_dpo_loss(
    per_token_logps, completion_mask, ref_chosen, ref_rejected, *, loss_type, beta, eps
):
    """TRL's ``DPOTrainer._compute_loss`` run unbound on a minimal object: a model stand-in
    returns the given per-token log-probs (rows: chosen then rejected), the reference
    log-probs come precomputed. Returns (mean loss, TRL's logged metrics)."""
    from trl.trainer.dpo_trainer import DPOTrainer

    rows, width = completion_mask.shape

    def model(**_):
        zeros = torch.zeros(rows, width - 1)
        return SimpleNamespace(
            log_probs=per_token_logps * completion_mask[:, 1:],
            entropy=zeros,
            mean_logits=zeros,
            is_top1=zeros.bool(),
        )

    model.training = True  # type: ignore[attr-defined]
    accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather=lambda t: t, gather_for_metrics=lambda t: t
    )
    fake = SimpleNamespace(
        model=model,
        accelerator=accelerator,
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=eps,
        use_weighting=False,
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros(rows, width, dtype=torch.long),
        "attention_mask": torch.ones(rows, width, dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    loss = DPOTrainer._compute_loss(fake, model, inputs, False)
    return loss, fake._metrics["train"]


@pytest.mark.parametrize(
    ("loss_type", "eps"), [("sigmoid", 0.0), ("ipo", 0.0), ("robust", 0.0), ("robust", 0.2)]
)
def test_equals_trl_on_the_same_log_probs(loss_type, eps):
    torch.manual_seed(0)
    pairs, width, beta = 5, 9, 0.3
    # completion tokens at the end of each row, of different lengths per row
    lengths = torch.tensor([3, 5, 1, 8, 4, 2, 6, 7, 3, 5])
    completion_mask = (torch.arange(width) >= width - lengths[:, None]).long()
    per_token = -torch.rand(2 * pairs, width - 1) * 3
    summed = (per_token * completion_mask[:, 1:]).sum(1)
    ref = summed + torch.randn(2 * pairs)
    trl_loss, metrics = trl_dpo_loss(
        per_token,
        completion_mask,
        ref[:pairs],
        ref[pairs:],
        loss_type=loss_type,
        beta=beta,
        eps=eps,
    )
    ours, chosen, rejected = dpo_loss(
        summed[:pairs],
        summed[pairs:],
        ref[:pairs],
        ref[pairs:],
        beta=beta,
        loss_type=loss_type,
        label_smoothing=eps,
        chosen_lengths=lengths[:pairs].float(),
        rejected_lengths=lengths[pairs:].float(),
    )
    assert ours.mean().item() == pytest.approx(trl_loss.item(), abs=1e-6, rel=1e-6)
    assert chosen.mean().item() == pytest.approx(metrics["rewards/chosen"][0], abs=1e-6)
    assert rejected.mean().item() == pytest.approx(metrics["rewards/rejected"][0], abs=1e-6)
    accuracy = (chosen > rejected).float().mean().item()
    assert accuracy == pytest.approx(metrics["rewards/accuracies"][0])
