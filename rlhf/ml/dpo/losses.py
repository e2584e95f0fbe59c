"""The DPO family's losses on sequence log-probabilities. Django-free; torch only.

With ``h = (log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))``:

- ``sigmoid`` — DPO, Rafailov et al. 2023, eq. 7: ``−log σ(β·h − m)``. With
  ``label_smoothing`` ε > 0 it is conservative DPO (cDPO, Mitchell 2023): the label is
  trusted with probability 1 − ε, ``−(1 − ε)·log σ(z) − ε·log σ(−z)``.
- ``ipo`` — IPO, Azar et al. 2023, eq. 17: ``(h − (1/2 + m)/β)²`` (τ = β). When the
  response lengths are given, each log-ratio is divided by its response's token count
  first, as TRL does (its authors confirmed the paper's results use that form); without
  lengths it is the paper's sum form.
- ``robust`` — robust DPO, Chowdhury et al. 2024, eq. 8 (an unbiased loss under labels
  flipped with probability ε): ``[(1 − ε)·ℓ(z) − ε·ℓ(−z)] / (1 − 2ε)``, ``ℓ(z) = −log σ(z)``.

``m`` is an optional per-pair margin in reward units (β·log-ratio, the unit of
``rewards/margins``), subtracted inside like the reward models' margin (Llama 2, eq. 2:
``−log σ(r_c − r_r − m)``): the pair must be won by at least ``m``.

The implicit rewards are ``β·(log π(y|x) − log π_ref(y|x))`` on the summed log-probs
(Rafailov et al. §5), whatever the loss type. The optional NLL term on the chosen response
(RPO, Pang et al. 2024) is added by the trainer, which has the per-token log-probs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf.ml.dpo.config import LOSS_TYPES, LossType


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float,
    loss_type: LossType | str = "sigmoid",
    label_smoothing: float = 0.0,
    margin: torch.Tensor | None = None,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss per pair, chosen rewards, rejected rewards), each of shape ``(pairs,)``.

    Log-probs are summed over each response's tokens. ``chosen_lengths`` and
    ``rejected_lengths`` (token counts) are read by ``ipo`` only, to length-average.
    """
    if beta <= 0:
        raise ValueError(f"beta must be greater than 0 (got {beta}).")
    if loss_type not in LOSS_TYPES:
        raise ValueError(
            f"Unknown DPO loss type {loss_type!r}; choose one of {', '.join(LOSS_TYPES)}."
        )
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5) (got {label_smoothing}).")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    m = margin if margin is not None else torch.zeros_like(chosen_logratios)
    if loss_type == "ipo":
        if chosen_lengths is not None and rejected_lengths is not None:
            chosen_logratios = chosen_logratios / chosen_lengths.clamp(min=1)
            rejected_logratios = rejected_logratios / rejected_lengths.clamp(min=1)
        h = chosen_logratios - rejected_logratios
        losses = (h - (0.5 + m) / beta) ** 2
    else:
        z = beta * (chosen_logratios - rejected_logratios) - m
        eps = label_smoothing
        if loss_type == "sigmoid":
            losses = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
        else:  # robust
            losses = (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards
