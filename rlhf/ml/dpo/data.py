"""Preference pairs → token ids → batches whose response log-probs one forward pass gives.

A pair's chosen and rejected responses share their prompt. Packed (the Llama family, any
decoder whose attention takes a custom 4D mask), ONE row per pair holds ``prompt + chosen +
rejected``: the rejected tokens take the positions right after the prompt and see the
prompt but not the chosen tokens, so the prompt is computed once. This is the reward
trainer's packing (``modeling.ml.training.data.PairCollator``), reused as is. Unpacked,
chosen rows then rejected rows, right-padded.

Each response token is predicted by the logits of the token before it; in a packed row the
first rejected token's predecessor is the last prompt token (not the last chosen one), so
batches carry, for every response token, (row, predicting position, token id, segment):
segment ``i`` is pair i's chosen response, ``pairs + i`` its rejected one.

Truncation: a response keeps its first ``max_length − 1`` tokens, and the prompt loses its
START to fit ``max_length`` with the longer response (at least one prompt token stays, the
one that predicts the first response token).

    >>> enc = EncodedPair([5, 6, 7], [5, 8], margin=0.0, index=0, shared=1)
    >>> b = dpo_batch([enc], pad_token_id=0, packed=True)
    >>> b["input_ids"].tolist(), b["token_pred"].tolist(), b["token_ids"].tolist()
    ([[5, 6, 7, 8]], [0, 1, 0], [6, 7, 8])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from modeling.ml.chat import chat_for
from modeling.ml.training.data import EncodedPair, PairCollator

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class PreferencePair:
    """A dialogue so far (ending with the user's turn), the preferred and the other
    response, and the pair's margin (annotator strength in reward units; 0: none)."""

    turns: tuple[dict, ...]
    chosen: str
    rejected: str
    margin: float = 0.0


def encode_preference_pairs(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[PreferencePair], *, max_length: int
) -> list[EncodedPair]:
    """Token ids through the model's chat template (``chat_for(tokenizer).encode_dialogue``),
    truncated as the module docstring says."""
    fmt = chat_for(tokenizer)
    out = []
    for i, pair in enumerate(pairs):
        prompt, chosen = fmt.encode_dialogue(pair.turns, pair.chosen)
        _, rejected = fmt.encode_dialogue(pair.turns, pair.rejected)
        if not prompt or not chosen or not rejected:
            raise ValueError(f"Preference pair {i} encodes to an empty prompt or response.")
        chosen, rejected = chosen[: max_length - 1], rejected[: max_length - 1]
        room = max_length - max(len(chosen), len(rejected))
        prompt = prompt[len(prompt) - min(room, len(prompt)) :]
        out.append(
            EncodedPair(prompt + chosen, prompt + rejected, pair.margin, i, shared=len(prompt))
        )
    return out


def dpo_batch(
    pairs: Sequence[EncodedPair], *, pad_token_id: int, packed: bool
) -> dict[str, torch.Tensor]:
    """The model inputs (``input_ids``, ``attention_mask``; packed: a ``(n, 1, L, L)``
    boolean block mask and ``position_ids``) and per response token ``token_rows``,
    ``token_pred``, ``token_ids``, ``token_segment``; ``lengths`` (2n,) and ``margins``."""
    batch: dict[str, Any] = PairCollator(pad_token_id=pad_token_id, packed=packed)(pairs)
    batch.pop("chosen_index", None)
    batch.pop("rejected_index", None)
    n = len(pairs)
    rows: list[int] = []
    pred: list[int] = []
    ids: list[int] = []
    segment: list[int] = []
    lengths = [0] * (2 * n)
    for i, p in enumerate(pairs):
        s, c = p.shared, len(p.chosen_ids)
        tail_c, tail_r = p.chosen_ids[s:], p.rejected_ids[s:]
        rows += [i] * len(tail_c)
        pred += list(range(s - 1, c - 1))
        ids += tail_c
        segment += [i] * len(tail_c)
        if packed:  # rejected tokens at c.., the first predicted from the last prompt token
            rows += [i] * len(tail_r)
            pred += [s - 1] + list(range(c, c + len(tail_r) - 1))
        else:
            rows += [n + i] * len(tail_r)
            pred += list(range(s - 1, len(p.rejected_ids) - 1))
        ids += tail_r
        segment += [n + i] * len(tail_r)
        lengths[i], lengths[n + i] = len(tail_c), len(tail_r)
    batch.update(
        token_rows=torch.tensor(rows, dtype=torch.long),
        token_pred=torch.tensor(pred, dtype=torch.long),
        token_ids=torch.tensor(ids, dtype=torch.long),
        token_segment=torch.tensor(segment, dtype=torch.long),
        lengths=torch.tensor(lengths, dtype=torch.float32),
    )
    return batch
