"""The reward-model loss, visible (Llama 2 §3.2.2, Eq. 2).

    L_ranking = -log( σ( r_θ(x, y_c) - r_θ(x, y_r) - m(r) ) )

r_θ(x, y) is the scalar score of response y to prompt x; y_c is the chosen response, y_r the
rejected one; m(r) is a margin that grows with the rated strength (see ``annotation.domain.MARGINS``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ranking_loss_with_margin(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margins: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over pairs of -log σ(r_c - r_r - m); ``logsigmoid`` keeps it stable for large gaps."""
    diff = chosen_rewards - rejected_rewards
    if margins is not None:
        diff = diff - margins
    return -F.logsigmoid(diff).mean()
