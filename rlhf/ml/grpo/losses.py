"""GRPO's and RLOO's group advantages and their clipped, KL-regularised policy loss. Torch only.

GRPO (Shao et al. 2024, DeepSeekMath, eq. 3), for G responses o_1..o_G to one prompt q:

    J(θ) = E[ 1/G Σ_i 1/|o_i| Σ_t { min(ρ_{i,t} Â_{i,t}, clip(ρ_{i,t}, 1−ε, 1+ε) Â_{i,t})
                                      − β D_KL[π_θ ‖ π_ref] } ],   ρ_{i,t} = π_θ(o_{i,t}|q,o_{i,<t}) / π_old(·)

with the per-token KL estimated by k3 (eq. 4), unbiased and never negative:

    D_KL = π_ref/π_θ − log(π_ref/π_θ) − 1

and the outcome advantage of eq. 3's setting, the reward normalised within its group:
Â_{i,t} = (r_i − mean(r)) / std(r).

Corrections this module offers as options:
- Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", §3.1): dividing by
  std(r) over-weights groups that are nearly all right or all wrong, and 1/|o_i| rewards
  short correct answers and long wrong ones; use Â = r_i − mean(r) (``scale="none"``) and
  divide the summed token losses by a constant, B·max_tokens (``normalisation="constant"``).
- DAPO (Yu et al. 2025, eq. 8–10): token-level normalisation, Σ over every token of the
  batch / the number of tokens (``normalisation="token"``), so long responses weigh by
  their length; and a decoupled upper clip 1+ε_high (``clip_range_high``, 0.28).
- RLOO (Ahmadian et al. 2024, "Back to Basics", eq. 6): the leave-one-out baseline,
  Â_i = r_i − 1/(G−1) Σ_{j≠i} r_j (``baseline="leave_one_out"``), unscaled.

Shapes: rewards (P, G) — prompt-major, the G samples of a prompt side by side; per-token
tensors (B, T) with B = P·G; advantages (B,), one per response.
"""

from __future__ import annotations

from typing import Literal

import torch

from rlhf.ml.ppo.losses import masked_mean

Baseline = Literal["group", "leave_one_out"]
Scale = Literal["std", "none"]
Normalisation = Literal["token", "sequence", "constant"]


def group_advantages(
    rewards: torch.Tensor,
    *,
    baseline: Baseline = "group",
    scale: Scale = "std",
    eps: float = 1e-4,
) -> torch.Tensor:
    """Each response's advantage against the other samples of its prompt, (P, G) → (P, G).

    ``baseline="group"``: r_i − mean_j r_j (GRPO); ``"leave_one_out"``: r_i − mean_{j≠i} r_j
    (RLOO; equals G/(G−1)·(r_i − mean_j r_j)). ``scale="std"`` divides by the group's
    standard deviation (Bessel-corrected, as TRL's ``nanstd``) + ``eps``; ``"none"`` leaves
    the difference (Dr. GRPO, RLOO). A group whose rewards are all equal gets 0 everywhere.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (prompts, group size), got shape {tuple(rewards.shape)}")
    size = rewards.shape[1]
    if size < 2:
        raise ValueError(
            f"A group needs at least 2 samples per prompt to have a baseline (got {size})."
        )
    rewards = rewards.float()
    if baseline == "group":
        advantages = rewards - rewards.mean(dim=1, keepdim=True)
    elif baseline == "leave_one_out":
        others = rewards.sum(dim=1, keepdim=True) - rewards
        advantages = rewards - others / (size - 1)
    else:
        raise ValueError(f"baseline must be 'group' or 'leave_one_out', got {baseline!r}")
    if scale == "std":
        advantages = advantages / (rewards.std(dim=1, keepdim=True) + eps)
    elif scale != "none":
        raise ValueError(f"scale must be 'std' or 'none', got {scale!r}")
    return advantages


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π_θ‖π_ref) by the k3 estimator (DeepSeekMath eq. 4; Schulman 2020):
    exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1, never negative."""
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
    clip_range_high: float | None = None,
    kl_coef: float,
    normalisation: Normalisation = "token",
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The negated GRPO objective (module docstring), its per-token terms

        ℓ_{i,t} = −min(ρ Â_i, clip(ρ, 1−ε_low, 1+ε_high) Â_i) + β·k3_{i,t}

    reduced over the response tokens in ``mask`` by ``normalisation``:
    ``"token"`` Σ_{i,t} ℓ / Σ_i |o_i| (DAPO); ``"sequence"`` mean_i (Σ_t ℓ / |o_i|) (GRPO
    eq. 3; favours short responses); ``"constant"`` Σ_{i,t} ℓ / (B·max_tokens) (Dr. GRPO).

    Returns ``(loss, stats)`` with ``stats["clip_fraction"]``, the share of tokens whose
    ratio was clipped where it matters (below 1−ε with Â < 0, above 1+ε_high with Â > 0:
    their gradient is zero), and ``stats["kl"]``, the mean per-token k3 KL; both detached.
    """
    if normalisation == "constant" and (max_tokens is None or max_tokens < 1):
        raise ValueError(
            "normalisation='constant' (Dr. GRPO) needs max_tokens, the generation budget."
        )
    if normalisation not in ("token", "sequence", "constant"):
        raise ValueError(
            f"normalisation must be 'token', 'sequence' or 'constant', got {normalisation!r}"
        )
    high = clip_range if clip_range_high is None else clip_range_high
    mask = mask.to(logprobs.dtype)
    adv = advantages.to(logprobs.dtype).unsqueeze(1)
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = k3_kl(logprobs, ref_logprobs)
    if kl_coef:
        per_token = per_token + kl_coef * kl
    if normalisation == "token":
        loss = masked_mean(per_token, mask)
    elif normalisation == "sequence":
        loss = masked_mean(per_token, mask, dim=1).mean()
    else:
        assert max_tokens is not None
        loss = (per_token * mask).sum() / (per_token.shape[0] * max_tokens)
    with torch.no_grad():
        region = ((ratio < 1.0 - clip_range) & (adv < 0)) | ((ratio > 1.0 + high) & (adv > 0))
        stats = {
            "clip_fraction": masked_mean(region.to(mask.dtype), mask),
            "kl": masked_mean(kl, mask),
        }
    return loss, stats
