"""KL between a fine-tuned policy and its starting point, on sampled responses.

PPO measures its KL to the reference at every step (``rlhf.ml.ppo``); rejection sampling
fine-tunes without one, so the over-optimisation monitor estimates it afterwards:
KL(π‖π_ref) ≈ mean over responses y ~ π of log π(y|x) − log π_ref(y|x) (the k1 estimator
of Schulman's "Approximating KL divergence"), in nats per response.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from rlhf.ml.rejection_sampling.sft import IGNORE_INDEX, build_sft_batch

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@torch.no_grad()
def response_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[Sequence[dict], str]],
) -> list[float]:
    """log p(response | dialogue) under ``model``, summed over the response's tokens."""
    device = next(model.parameters()).device
    max_length = int(getattr(model.config, "max_position_embeddings", 2048))
    batch = build_sft_batch(tokenizer, examples, max_length)
    was_training = model.training
    model.eval()
    try:
        logits = (
            model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
            )
            .logits[:, :-1]
            .float()
        )
    finally:
        model.train(was_training)
    labels = batch["labels"][:, 1:].to(device)
    mask = labels != IGNORE_INDEX
    token_lp = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1))
    return (token_lp.squeeze(-1) * mask).sum(dim=-1).tolist()


def sequence_kl(
    policy: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[Sequence[dict], str]],
) -> float:
    """Mean log π(y|x) − log π_ref(y|x) over ``examples`` sampled from ``policy``."""
    if not examples:
        return 0.0
    mine = response_logprobs(policy, tokenizer, examples)
    theirs = response_logprobs(reference, tokenizer, examples)
    return statistics.fmean(a - b for a, b in zip(mine, theirs, strict=True))
