"""The replay buffer: a rollout's rows, handed out as shuffled mini-batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from rlhf.ml.ppo.experience import Experience


@dataclass
class MiniBatch:
    sequences: torch.Tensor
    attention_mask: torch.Tensor
    action_mask: torch.Tensor
    old_logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


class ReplayBuffer:
    def __init__(self, experience: Experience):
        self.exp = experience

    def minibatches(self, size: int, generator: torch.Generator) -> Iterator[MiniBatch]:
        e = self.exp
        order = torch.randperm(len(e), generator=generator).to(e.sequences.device)
        for lo in range(0, len(e), size):
            idx = order[lo : lo + size]
            # Trim the right padding this mini-batch does not need.
            width = int(e.action_mask[idx].sum(dim=1).max().item()) or 1
            end = e.prompt_width + width
            yield MiniBatch(
                sequences=e.sequences[idx, :end],
                attention_mask=e.attention_mask[idx, :end],
                action_mask=e.action_mask[idx, :width],
                old_logprobs=e.old_logprobs[idx, :width],
                values=e.values[idx, :width],
                advantages=e.advantages[idx, :width],
                returns=e.returns[idx, :width],
            )
