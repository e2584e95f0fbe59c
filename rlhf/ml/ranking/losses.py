"""RRHF's and PRO's losses on length-normalised sequence log-probabilities. Django-free;
torch only.

For a prompt x and its K responses y_1 … y_K with rewards r_1 … r_K, both losses score a
response by its length-normalised log-probability under the policy (RRHF eq. 1, PRO's
r_π):

    p_i = (1/|y_i|) Σ_t log π(y_{i,t} | x, y_{i,<t})

and add a fine-tuning term on the best response. That term is its NLL averaged over its
tokens, ``best_nll = −p_best`` (the token-mean cross-entropy of RRHF's reference code),
rather than the summed NLL of RRHF's eq. 3 and PRO's code: summed, it would grow with the
response's length while the ranking terms are per-token, and long best responses would
drown them.

- **RRHF** (Yuan et al. 2023, eqs. 1-4): every pair the reward orders, the worse one must
  not score above the better one:

      L_rank = Σ_{r_i < r_j} max(0, p_i − p_j),    L = L_rank + λ·L_ft

  Equal rewards make no pair.
- **PRO** (Song et al. 2024, eq. 5 and the β·SFT term): with the responses sorted best
  first, y^1 ≻ … ≻ y^n, the best of each suffix must win a softmax over that suffix:

      L_PRO = −Σ_{k=1}^{n−1} log [ exp(p^k / T^k_k) / Σ_{i=k}^{n} exp(p^i / T^i_k) ],
      L = L_PRO + β·L_SFT(y^1)

  With temperature 1 (the default) this is the Plackett-Luce likelihood of the ranking.
  The paper's dynamic temperature (``reward_temperature``) sets 1/T^i_k = r^k − r^i for
  i > k and 1/T^k_k = max_{i>k} 1/T^i_k, so responses far below y^k are pushed harder.
  When the rewards are given, responses tied with y^k are left out of its suffix (neither
  is preferred), and a suffix with nothing strictly below y^k adds no term. (PRO's code
  keeps a tied response in the suffix, at 1/T = 0, as a constant exp(0) = 1.)

Each returns ``(loss, stats)``: the loss averaged over prompts (each prompt's terms
summed, as in the papers) and detached scalars ``rank_loss``, ``sft_loss`` and
``rank_accuracy`` (the share of (best, other) pairs with a lower reward where the policy
already scores the best higher, p_best > p_other; 0 when every reward in the batch ties).
"""

from __future__ import annotations

import torch


def _check_shapes(
    seq_logps: torch.Tensor, best_nll: torch.Tensor, rewards: torch.Tensor | None
) -> None:
    if seq_logps.dim() != 2 or seq_logps.shape[1] < 2:
        raise ValueError(
            f"seq_logps must be (prompts, K) with K >= 2 responses per prompt "
            f"(got shape {tuple(seq_logps.shape)})."
        )
    if best_nll.shape != seq_logps.shape[:1]:
        raise ValueError(
            f"best_nll must hold one value per prompt, shape {tuple(seq_logps.shape[:1])} "
            f"(got {tuple(best_nll.shape)})."
        )
    if rewards is not None and rewards.shape != seq_logps.shape:
        raise ValueError(
            f"rewards must match seq_logps, shape {tuple(seq_logps.shape)} (got {tuple(rewards.shape)})."
        )


def rank_accuracy(seq_logps: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Share of (best, other) pairs, other with a strictly lower reward, where the policy
    scores the best response higher (p_best > p_other). The best is the first highest
    reward. 0 when no response is below its prompt's best."""
    best = rewards.argmax(dim=1, keepdim=True)  # the first of tied maxima
    lower = rewards < rewards.gather(1, best)
    wins = seq_logps.detach().gather(1, best) > seq_logps.detach()
    return (wins & lower).sum() / lower.sum().clamp(min=1)


def rrhf_loss(
    seq_logps: torch.Tensor,
    rewards: torch.Tensor,
    best_nll: torch.Tensor,
    *,
    sft_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """RRHF (Yuan et al. 2023, eq. 4): ``L_rank + sft_weight · L_ft``, averaged over prompts.

    ``seq_logps`` (P, K): length-normalised log-probs p_i, in any order; ``rewards`` (P, K)
    their rewards; ``best_nll`` (P,): the token-averaged NLL of each prompt's best response.
    """
    _check_shapes(seq_logps, best_nll, rewards)
    if sft_weight < 0:
        raise ValueError(f"sft_weight must be 0 or more (got {sft_weight}).")
    # worse[p, i, j]: response i has a lower reward than response j (eq. 2's r_i < r_j)
    worse = rewards.unsqueeze(2) < rewards.unsqueeze(1)
    hinge = torch.relu(seq_logps.unsqueeze(2) - seq_logps.unsqueeze(1))  # max(0, p_i − p_j)
    rank = (hinge * worse).sum(dim=(1, 2)).mean()
    sft = best_nll.mean()
    loss = rank + sft_weight * sft
    return loss, {
        "rank_loss": rank.detach(),
        "sft_loss": sft.detach(),
        "rank_accuracy": rank_accuracy(seq_logps, rewards),
    }


def pro_loss(
    seq_logps: torch.Tensor,
    best_nll: torch.Tensor,
    *,
    sft_weight: float = 0.05,
    rewards: torch.Tensor | None = None,
    reward_temperature: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PRO (Song et al. 2024, eq. 5 + β·SFT): ``L_PRO + sft_weight · L_SFT``, averaged
    over prompts.

    ``seq_logps`` (P, K): length-normalised log-probs sorted best first; ``best_nll`` (P,):
    the token-averaged NLL of each prompt's best response (column 0). ``rewards`` (P, K),
    sorted the same way, are optional: with them ties are left out of the suffixes (see the
    module docstring) and ``reward_temperature`` may scale by the reward gaps.
    """
    _check_shapes(seq_logps, best_nll, rewards)
    if sft_weight < 0:
        raise ValueError(f"sft_weight must be 0 or more (got {sft_weight}).")
    if reward_temperature and rewards is None:
        raise ValueError("PRO's reward temperature needs the rewards.")
    if rewards is not None and bool((rewards[:, 1:] > rewards[:, :-1]).any()):
        raise ValueError("PRO needs the responses sorted best first: a reward rises along a row.")
    k_total = seq_logps.shape[1]
    terms = seq_logps.new_zeros(seq_logps.shape[0])
    for k in range(k_total - 1):
        suffix = seq_logps[:, k:]  # y^k … y^n
        if rewards is None:
            logits = suffix
        else:
            gap = rewards[:, k : k + 1] - rewards[:, k:]  # r^k − r^i, 0 for i = k
            below = gap > 0
            included = below.clone()
            included[:, 0] = True
            if reward_temperature:
                head = gap.max(dim=1, keepdim=True).values  # 1/T^k_k = max_i 1/T^i_k
                scale = torch.cat([head, gap[:, 1:]], dim=1)
                logits = suffix * scale
            else:
                logits = suffix
            logits = logits.masked_fill(~included, float("-inf"))
        # −log softmax of the suffix at its head y^k
        term = torch.logsumexp(logits, dim=1) - logits[:, 0]
        if rewards is not None:
            term = torch.where(below.any(dim=1), term, torch.zeros_like(term))
        terms = terms + term
    rank = terms.mean()
    sft = best_nll.mean()
    loss = rank + sft_weight * sft
    if rewards is None:  # the order is the ranking: column 0 is better than every other
        order = -torch.arange(k_total, device=seq_logps.device, dtype=seq_logps.dtype)
        rewards = order.expand_as(seq_logps)
    return loss, {
        "rank_loss": rank.detach(),
        "sft_loss": sft.detach(),
        "rank_accuracy": rank_accuracy(seq_logps, rewards),
    }
