"""Preference pairs → token ids → padded batches.

Each pair renders with the one chat template (``modeling.chat.render_dialogue``). A
sequence longer than ``max_length`` loses its START (left truncation), so the response the
reward is read from always survives. The collator puts chosen and rejected into ONE batch
(chosen rows first) so a single forward pass scores both, padded only to the longest row
of that batch (dynamic padding).

Example::

    >>> collate = PairCollator(pad_token_id=0)
    >>> batch = collate([EncodedPair([5, 6, 7], [5, 8], margin=1.0, index=0)])
    >>> batch["input_ids"].tolist()
    [[5, 6, 7], [5, 8, 0]]
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from modeling.chat import render_dialogue
from modeling.training.config import MarginTable, margin_for


@dataclass(frozen=True, slots=True)
class EncodedPair:
    chosen_ids: list[int]
    rejected_ids: list[int]
    margin: float
    index: int  # position in the caller's pair list, to map rewards back

    @property
    def length(self) -> int:
        return max(len(self.chosen_ids), len(self.rejected_ids))


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids with BOS, truncated from the LEFT to ``max_length`` (keeps the response end)."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return [(bos + row)[-max_length:] for row in ids]


def encode_pairs(
    tokenizer, pairs: Sequence, *, max_length: int, margin: MarginTable | str
) -> list[EncodedPair]:
    """Encode ``PreferencePair``-like objects (context, chosen, rejected, strength)."""
    chosen = encode_texts(
        tokenizer, [render_dialogue(p.context, p.chosen) for p in pairs], max_length
    )
    rejected = encode_texts(
        tokenizer, [render_dialogue(p.context, p.rejected) for p in pairs], max_length
    )
    return [
        EncodedPair(c, r, margin_for(margin, p.strength), i)
        for i, (p, c, r) in enumerate(zip(pairs, chosen, rejected, strict=True))
    ]


@dataclass(frozen=True)
class PairCollator:
    """Stack chosen then rejected rows, right-padded to the batch's longest row."""

    pad_token_id: int

    def __call__(self, pairs: Sequence[EncodedPair]) -> dict[str, torch.Tensor]:
        rows = [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "margins": torch.tensor([p.margin for p in pairs], dtype=torch.float32),
        }


def batch_order(
    pairs: Sequence[EncodedPair],
    *,
    batch_size: int,
    num_epochs: float,
    seed: int,
    group_by_length: bool,
) -> list[list[int]]:
    """Micro-batches of pair indices for the whole run, a pure function of its arguments
    (so a resumed run replays the same order and skips what it already did).

    With ``group_by_length``, shuffled pairs are cut into mega-batches of 64 batches, each
    sorted by length and split, and the batches shuffled: far less padding, still random.
    """
    per_epoch = math.ceil(len(pairs) / batch_size)
    wanted = max(1, math.ceil(per_epoch * num_epochs))
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < wanted:
        rng = random.Random(seed * 1000 + epoch)
        idx = list(range(len(pairs)))
        rng.shuffle(idx)
        if group_by_length:
            mega = batch_size * 64
            chunks = []
            for start in range(0, len(idx), mega):
                block = sorted(idx[start : start + mega], key=lambda i: pairs[i].length)
                chunks += [block[j : j + batch_size] for j in range(0, len(block), batch_size)]
            rng.shuffle(chunks)
        else:
            chunks = [idx[j : j + batch_size] for j in range(0, len(idx), batch_size)]
        batches += chunks
        epoch += 1
    return batches[:wanted]
