"""RRHF's and PRO's losses on tiny tensors: hand-computed values, gradient directions, ties."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf.ml.ranking.losses import pro_loss, rank_accuracy, rrhf_loss


def _leaf(values):
    return torch.tensor(values, requires_grad=True)


def test_rrhf_hand_values():
    # rewards 3 > 2 > 1; only the pair (second worse than first) is misordered: p_1 > p_0
    p = _leaf([[-1.0, -0.5, -3.0]])
    loss, stats = rrhf_loss(p, torch.tensor([[3.0, 2.0, 1.0]]), -p[:, 0], sft_weight=1.0)
    # L_rank = max(0, -0.5 - -1) + max(0, -3 - -1) + max(0, -3 - -0.5) = 0.5; L_ft = 1.0
    assert loss.item() == pytest.approx(1.5)
    assert stats["rank_loss"].item() == pytest.approx(0.5)
    assert stats["sft_loss"].item() == pytest.approx(1.0)
    # best (-1.0) beats -3.0 but not -0.5
    assert stats["rank_accuracy"].item() == pytest.approx(0.5)


def test_rrhf_sums_pairs_per_prompt_and_averages_prompts_with_lambda():
    p = torch.tensor([[-2.0, -1.0, -0.5], [-1.0, -2.0, -3.0]])
    rewards = torch.tensor([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0]])
    nll = torch.tensor([2.0, 1.0])
    loss, stats = rrhf_loss(p, rewards, nll, sft_weight=0.5)
    # prompt 0, fully reversed: (−1 − −2) + (−0.5 − −2) + (−0.5 − −1) = 1 + 1.5 + 0.5 = 3
    # prompt 1, in order: 0
    assert stats["rank_loss"].item() == pytest.approx(1.5)
    assert loss.item() == pytest.approx(1.5 + 0.5 * 1.5)


def test_rrhf_ties_make_no_pair():
    p = _leaf([[-1.0, -0.5, -3.0]])
    loss, stats = rrhf_loss(p, torch.tensor([[2.0, 2.0, 1.0]]), -p[:, 0], sft_weight=0.0)
    assert loss.item() == 0.0
    all_tied, stats = rrhf_loss(
        torch.tensor([[-5.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.zeros(1), sft_weight=0.0
    )
    assert all_tied.item() == 0.0
    assert stats["rank_accuracy"].item() == 0.0  # no ordered pair


def test_rrhf_gradient_raises_the_better_response():
    p = _leaf([[-1.0, -0.5, -3.0]])
    loss, _ = rrhf_loss(p, torch.tensor([[3.0, 2.0, 1.0]]), torch.zeros(1), sft_weight=0.0)
    loss.backward()
    # descent (−grad) raises the best's log-prob and lowers the one misordered above it
    assert p.grad[0, 0] < 0 < p.grad[0, 1]
    assert p.grad[0, 2] == 0  # below everything already: no gradient


def test_rrhf_order_of_columns_does_not_matter():
    p = torch.tensor([[-0.5, -3.0, -1.0]])
    rewards = torch.tensor([[2.0, 1.0, 3.0]])  # the same responses as the hand test, shuffled
    loss, stats = rrhf_loss(p, rewards, torch.tensor([1.0]), sft_weight=1.0)
    assert loss.item() == pytest.approx(1.5)
    assert stats["rank_accuracy"].item() == pytest.approx(0.5)


def test_pro_hand_values():
    p = _leaf([[-1.0, -2.0, -3.0]])
    loss, stats = pro_loss(p, -p[:, 0], sft_weight=0.05)
    e = math.exp
    first = -math.log(e(-1) / (e(-1) + e(-2) + e(-3)))
    second = -math.log(e(-2) / (e(-2) + e(-3)))
    assert stats["rank_loss"].item() == pytest.approx(first + second)
    assert first + second == pytest.approx(0.720868, abs=1e-6)
    assert loss.item() == pytest.approx(first + second + 0.05 * 1.0)
    assert stats["rank_accuracy"].item() == 1.0


def test_pro_gradient_raises_the_best_and_lowers_the_worst():
    p = _leaf([[-2.0, -2.0, -2.0]])
    loss, _ = pro_loss(p, torch.zeros(1), sft_weight=0.0)
    loss.backward()
    # uniform scores: step 1 gives the best −2/3, step 2 gives the second −1/2 + 1/3
    assert p.grad[0].tolist() == pytest.approx([-2 / 3, 1 / 3 - 1 / 2, 1 / 3 + 1 / 2])
    assert p.grad.sum().item() == pytest.approx(0.0, abs=1e-6)


def test_pro_sft_term_gradient():
    p = _leaf([[-1.0, -2.0]])
    loss, _ = pro_loss(p, -p[:, 0], sft_weight=1.0)
    loss.backward()
    sigma = 1 / (1 + math.exp(-1))  # softmax share of the best
    assert p.grad[0, 0].item() == pytest.approx(-(1 - sigma) - 1.0)


def test_pro_ties_leave_the_suffix():
    p = torch.tensor([[-1.0, -2.0, -3.0]])
    # the first two tie: step 1 ranks y^1 over y^3 only; step 2 ranks y^2 over y^3
    loss, _ = pro_loss(p, torch.zeros(1), sft_weight=0.0, rewards=torch.tensor([[1.0, 1.0, 0.0]]))
    e = math.exp
    expected = math.log(1 + e(-2)) + math.log(1 + e(-1))
    assert loss.item() == pytest.approx(expected)
    # the last two tie: step 2 has nothing below y^2 and adds no term
    loss, _ = pro_loss(p, torch.zeros(1), sft_weight=0.0, rewards=torch.tensor([[1.0, 0.0, 0.0]]))
    assert loss.item() == pytest.approx(math.log(1 + e(-1) + e(-2)))
    # without ties the rewards change nothing at temperature 1
    plain, _ = pro_loss(p, torch.zeros(1), sft_weight=0.0)
    with_rewards, _ = pro_loss(
        p, torch.zeros(1), sft_weight=0.0, rewards=torch.tensor([[3.0, 2.0, 1.0]])
    )
    assert with_rewards.item() == pytest.approx(plain.item())


def test_pro_reward_temperature_hand_values():
    p = torch.tensor([[-1.0, -2.0, -3.0]])
    rewards = torch.tensor([[3.0, 2.5, 1.0]])
    loss, _ = pro_loss(p, torch.zeros(1), sft_weight=0.0, rewards=rewards, reward_temperature=True)
    e = math.exp
    # step 1: 1/T = r1 − ri (0.5, 2.0), the head's 1/T = 2.0
    head = -1.0 * 2.0
    step1 = -math.log(e(head) / (e(head) + e(-2.0 * 0.5) + e(-3.0 * 2.0)))
    # step 2: 1/T = 2.5 − 1.0 = 1.5 for both
    step2 = -math.log(e(-2.0 * 1.5) / (e(-2.0 * 1.5) + e(-3.0 * 1.5)))
    assert loss.item() == pytest.approx(step1 + step2)


def test_pro_refuses_unsorted_rewards_and_temperature_without_rewards():
    p = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="sorted best first"):
        pro_loss(p, torch.zeros(1), rewards=torch.tensor([[1.0, 2.0, 0.0]]))
    with pytest.raises(ValueError, match="needs the rewards"):
        pro_loss(p, torch.zeros(1), reward_temperature=True)


def test_shapes_and_weights_are_checked():
    with pytest.raises(ValueError, match="K >= 2"):
        rrhf_loss(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="one value per prompt"):
        pro_loss(torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="rewards must match"):
        rrhf_loss(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="sft_weight"):
        rrhf_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), sft_weight=-1.0)


def test_rank_accuracy_uses_the_first_best_of_ties():
    p = torch.tensor([[-1.0, -3.0, -2.0, -0.5]])
    rewards = torch.tensor([[2.0, 2.0, 1.0, 0.0]])
    # best is column 0; lower: columns 2 (−2 < −1: win) and 3 (−0.5 > −1: loss); 1 ties
    assert rank_accuracy(p, rewards).item() == pytest.approx(0.5)
