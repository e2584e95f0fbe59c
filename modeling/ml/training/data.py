"""Preference pairs → token ids → padded batches.

Each pair renders in its model's chat template (``modeling.ml.chat.chat_for``). The
chosen and the rejected text share their dialogue (the prompt) and differ in the last
response. Encoding keeps that shared prefix once: both views (prompt + chosen, prompt +
rejected) start with the same ``shared`` tokens, and a view longer than ``max_length``
loses the START of the prompt (left truncation), so the responses the reward is read from
always survive; a response longer than ``max_length`` on its own keeps its end.

The collator puts a pair's chosen and rejected into one forward pass, two ways:

- packed (what training uses with Llama-family models): ONE row per pair, ``prompt +
  chosen + rejected``, where the rejected tokens take the positions right after the
  prompt and see the prompt but not the chosen tokens (a block attention mask). The
  prompt is computed once instead of twice, and rows are padded only to the longest
  packed row of the batch. Rewards are read at the last token of each response. The
  result is the same as two separate rows (tested), for fewer tokens;
- unpacked: chosen rows then rejected rows, right-padded to the longest row (what an
  encoder backbone uses: it reads every token both ways, so the block mask cannot apply).

Example::

    >>> collate = PairCollator(pad_token_id=0)
    >>> batch = collate([EncodedPair([5, 6, 7], [5, 8], margin=1.0, index=0, shared=1)])
    >>> batch["input_ids"].tolist()
    [[5, 6, 7], [5, 8, 0]]
    >>> pair = EncodedPair([5, 6, 7], [5, 8], margin=1.0, index=0, shared=1)
    >>> packed = PairCollator(pad_token_id=0, packed=True)([pair])
    >>> packed["input_ids"].tolist(), packed["position_ids"].tolist()
    ([[5, 6, 7, 8]], [[0, 1, 2, 1]])
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from annotation.domain import MarginTable, margin_for
from modeling.ml.chat import chat_for, render_dialogue

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True, slots=True)
class EncodedPair:
    chosen_ids: list[int]  # the chosen view: prompt + chosen response
    rejected_ids: list[int]  # the rejected view: prompt + rejected response
    margin: float
    index: int  # position in the caller's pair list, to map rewards back
    shared: int = 0  # leading tokens the two views have in common (the prompt)

    def __post_init__(self) -> None:
        if not (0 <= self.shared < min(len(self.chosen_ids), len(self.rejected_ids))):
            raise ValueError("shared must leave at least one token of each response")

    @property
    def length(self) -> int:
        """Tokens this pair costs in a packed row (prompt once, both responses)."""
        return len(self.chosen_ids) + len(self.rejected_ids) - self.shared


def encode_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    *,
    encoder: bool = False,
) -> list[list[int]]:
    """Token ids truncated from the LEFT to ``max_length`` (keeps the response end): with
    BOS where a decoder's chat template wants it (``ChatFormat.encode``); inside ``[CLS] ... [SEP]`` for an ``encoder`` (the markers kept)."""
    if encoder:
        ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        head, tail = _encoder_marks(tokenizer)
        room = max_length - len(head) - len(tail)
        return [head + row[-room:] + tail for row in ids]
    # A decoder reads the dialogue in its model's chat template, BOS as that template wants.
    return [row[-max_length:] for row in chat_for(tokenizer).encode(texts)]


def _encoder_marks(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids an encoder's tokenizer puts before and after one text ([CLS], [SEP])."""
    head = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
    tail = [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None else []
    return head, tail


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence,
    *,
    max_length: int,
    margin: MarginTable | str,
    encoder: bool = False,
) -> list[EncodedPair]:
    """Encode ``PreferencePair``-like objects (context, chosen, rejected, strength).

    Both texts are tokenised whole (so the ids are exactly what scoring one text gives),
    then split into their common prefix (the prompt) and the two response tails. Each
    view keeps at most ``max_length`` tokens: the prompt is cut from the left to what
    the longer response leaves, so both views see the same prompt tokens. An ``encoder``'s
    views are cut the same way, then put inside its ``[CLS] ... [SEP]``.
    """
    # A decoder reads its model's chat template (modeling.ml.chat); an encoder, plain text.
    render = render_dialogue if encoder else chat_for(tokenizer).dialogue
    texts_c = [render(p.context, p.chosen) for p in pairs]
    texts_r = [render(p.context, p.rejected) for p in pairs]
    margins = [margin_for(p.strength, table=margin) for p in pairs]
    if encoder:
        head, tail = _encoder_marks(tokenizer)
        room = max_length - len(head) - len(tail)
        chosen = tokenizer(texts_c, add_special_tokens=False)["input_ids"]
        rejected = tokenizer(texts_r, add_special_tokens=False)["input_ids"]
        out = []
        for i, (c, r) in enumerate(zip(chosen, rejected, strict=True)):
            cut = _encoded_pair(c, r, room, margins[i], i)
            out.append(
                EncodedPair(
                    head + cut.chosen_ids + tail,
                    head + cut.rejected_ids + tail,
                    cut.margin,
                    i,
                    shared=len(head) + cut.shared,
                )
            )
        return out
    chosen = encode_texts(tokenizer, texts_c, max_length=10**9)
    rejected = encode_texts(tokenizer, texts_r, max_length=10**9)
    return [
        _encoded_pair(c, r, max_length, margins[i], i)
        for i, (c, r) in enumerate(zip(chosen, rejected, strict=True))
    ]


def _encoded_pair(
    chosen: list[int], rejected: list[int], max_length: int, margin: float, index: int
) -> EncodedPair:
    common = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        common += 1
    common = min(common, len(chosen) - 1, len(rejected) - 1)  # each response keeps a token
    prompt, tail_c, tail_r = chosen[:common], chosen[common:], rejected[common:]
    room = max_length - max(len(tail_c), len(tail_r))
    if room > 0:
        prompt = prompt[len(prompt) - min(room, len(prompt)) :]
    else:  # a response alone fills the window: keep the end of each response
        prompt, tail_c, tail_r = [], tail_c[-max_length:], tail_r[-max_length:]
    return EncodedPair(prompt + tail_c, prompt + tail_r, margin, index, shared=len(prompt))


@dataclass(frozen=True)
class PairCollator:
    """Stack chosen then rejected rows, right-padded to the batch's longest row; or, with
    ``packed``, one row per pair (prompt + chosen + rejected) with position ids, a block
    attention mask (``(batch, 1, length, length)`` booleans, True where a token may
    attend) and the index of each response's last token."""

    pad_token_id: int
    packed: bool = False

    def __call__(self, pairs: Sequence[EncodedPair]) -> dict[str, torch.Tensor]:
        if self.packed:
            return self._packed(pairs)
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

    def _packed(self, pairs: Sequence[EncodedPair]) -> dict[str, torch.Tensor]:
        width = max(p.length for p in pairs)
        n = len(pairs)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((n, width), dtype=torch.long)
        allowed = torch.zeros((n, width, width), dtype=torch.bool)
        chosen_index = torch.zeros(n, dtype=torch.long)
        rejected_index = torch.zeros(n, dtype=torch.long)
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        for i, p in enumerate(pairs):
            s, c = p.shared, len(p.chosen_ids)
            tail_r = p.rejected_ids[s:]
            end = c + len(tail_r)
            input_ids[i, :c] = torch.tensor(p.chosen_ids, dtype=torch.long)
            input_ids[i, c:end] = torch.tensor(tail_r, dtype=torch.long)
            position_ids[i, :c] = torch.arange(c)
            position_ids[i, c:end] = torch.arange(s, s + len(tail_r))
            allowed[i, :end, :end] = causal[:end, :end]
            allowed[i, c:end, s:c] = False  # the rejected response never sees the chosen one
            allowed[i, end:, :].fill_(False)
            # Padding attends to itself only: a row with nothing to attend to gives NaN.
            allowed[i, end:, end:] = torch.eye(width - end, dtype=torch.bool)
            chosen_index[i], rejected_index[i] = c - 1, end - 1
        return {
            "input_ids": input_ids,
            "position_ids": position_ids,
            "attention_mask": allowed.unsqueeze(1),
            "chosen_index": chosen_index,
            "rejected_index": rejected_index,
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
