"""Supervised fine-tuning on (dialogue, response) targets, loss on response tokens only."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from modeling.ml.chat import chat_for

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rlhf.ml.rejection_sampling.config import RejectionSamplingConfig

IGNORE_INDEX = -100


def build_sft_batch(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[Sequence[dict], str]],
    max_length: int,
) -> dict[str, torch.Tensor]:
    """Right-padded ids with labels masked (IGNORE_INDEX) on the prompt and padding.

    Truncation keeps the end of the prompt, so the response (the part trained on) survives.
    """
    rows, labels = [], []
    fmt = chat_for(tokenizer)  # the ids the policy was prompted with and wrote (no drift)
    for turns, response in examples:
        prompt_ids, response_ids = fmt.encode_dialogue(turns, response)
        response_ids = response_ids[:max_length]
        prompt_ids = prompt_ids[max(0, len(prompt_ids) - (max_length - len(response_ids))) :]
        rows.append(prompt_ids + response_ids)
        labels.append([IGNORE_INDEX] * len(prompt_ids) + response_ids)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for lab in labels]),
    }


def finetune_on_targets(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[tuple[Sequence[dict], str]],
    config: RejectionSamplingConfig,
    on_step: Callable[[int, int, float], None] | None = None,
) -> list[float]:
    """AdamW over ``config.epochs`` passes; returns the loss of each optimizer step."""
    if not examples:
        raise ValueError("No fine-tuning targets: rejection sampling selected nothing.")
    device = next(model.parameters()).device
    max_length = int(getattr(model.config, "max_position_embeddings", 2048))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    total = config.epochs * math.ceil(len(examples) / config.batch_size)
    losses: list[float] = []
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        for lo in range(0, len(order), config.batch_size):
            batch = build_sft_batch(
                tokenizer, [examples[i] for i in order[lo : lo + config.batch_size]], max_length
            )
            out = model(**{k: v.to(device) for k, v in batch.items()})
            if not torch.isfinite(out.loss):
                raise FloatingPointError(
                    f"Fine-tuning loss became {out.loss.item()} at step {len(losses) + 1}."
                )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            losses.append(out.loss.item())
            if on_step is not None:
                on_step(len(losses), total, losses[-1])
    model.eval()
    return losses
