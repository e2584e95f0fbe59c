"""The policy with a scalar value head on its last hidden state, and log-prob helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, matching what ``generate`` used."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


class PolicyWithValueHead(nn.Module):
    """A causal LM sharing its trunk with a value head V(s_t) = w·h_t + b."""

    def __init__(self, lm: PreTrainedModel) -> None:
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.config.hidden_size, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / (lm.config.hidden_size + 1))
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(next(lm.parameters()).device)

    def forward(
        self, sequences: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits predicting each response token, and the value before each, both (B, T)-aligned."""
        hidden = self.lm.base_model(
            input_ids=sequences,
            attention_mask=attention_mask,
            position_ids=position_ids_for(attention_mask),
            use_cache=False,
        ).last_hidden_state
        # The state before response token t is the hidden state at position P-1+t.
        hidden = hidden[:, prompt_width - 1 : -1]
        logits = self.lm.get_output_embeddings()(hidden)
        # The head stays float32 when the trunk runs in bf16 (CUDA).
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()
        return logits, values


@torch.no_grad()
def reference_logprobs(
    ref_lm: PreTrainedModel,
    sequences: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_width: int,
) -> torch.Tensor:
    out = ref_lm(
        input_ids=sequences,
        attention_mask=attention_mask,
        position_ids=position_ids_for(attention_mask),
        use_cache=False,
    )
    logits = out.logits[:, prompt_width - 1 : -1]
    return gather_logprobs(logits, sequences[:, prompt_width:])
