"""Local generation with transformers: batched, left-padded, KV-cached, K samples per call.

All prompts of a chunk and all their samples go through one ``model.generate`` call
(``num_return_sequences=K``), so the KV cache of each prompt's prefill is computed once
per row and the GPU/CPU sees wide matrix products rather than a loop of tiny ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from modeling.ml.chat import ChatFormat, chat_for
from rlhf.ml.generation.base import (
    Dialogue,
    Generation,
    GenerationResult,
    PromptTooLongError,
    SamplingParams,
    require_prompts,
)

if TYPE_CHECKING:
    from transformers import GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase


def context_length(model: PreTrainedModel) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def load_tokenizer_and_context(path: str | Path) -> tuple[PreTrainedTokenizerBase, int]:
    """The tokenizer of the checkpoint at ``path`` and its context length, without loading
    the weights: what ``rlhf.ml.prompt_fit`` needs to fit prompts before sampling."""
    from transformers import AutoConfig

    from modeling.ml.tokenizer import tokenizer_load

    config = AutoConfig.from_pretrained(path)
    return tokenizer_load(path), int(getattr(config, "max_position_embeddings", 2048))


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding (generation continues from the right edge) and a pad token."""
    from modeling.ml.tokenizer import pad_token_set

    tokenizer.padding_side = "left"
    pad_token_set(tokenizer)


def _suppressed_ids(tokenizer: PreTrainedTokenizerBase, fmt: ChatFormat) -> list[int]:
    """Special tokens a response never contains (role markers, BOS, pad, unknown): a sampled
    one would vanish from the decoded text and the text scored would differ from the ids
    sampled, so they are never sampled. The stop tokens stay."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special = set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}
    return sorted(special - set(fmt.stop_token_ids))


def _stop_string_lengths(
    tokenizer: PreTrainedTokenizerBase, fmt: ChatFormat, response: torch.Tensor
) -> list[int | None]:
    """Per row, the tokens up to and including the end of the first stop string (None: no
    stop), for a template whose end of turn is text of several tokens."""
    out: list[int | None] = []
    for row in response.tolist():
        hi = len(row)
        if not any(s in tokenizer.decode(row) for s in fmt.stop_strings):
            out.append(None)
            continue
        lo = 1
        while lo < hi:  # the shortest prefix whose text holds a stop string
            mid = (lo + hi) // 2
            if any(s in tokenizer.decode(row[:mid]) for s in fmt.stop_strings):
                hi = mid
            else:
                lo = mid + 1
        out.append(lo)
    return out


@dataclass(frozen=True)
class SampledTokens:
    """Token-level output of ``sample_tokens``: what PPO needs beyond the text."""

    sequences: torch.Tensor  # (B*K, P+T): left-padded prompt, then response, right-padded
    attention_mask: torch.Tensor  # (B*K, P+T): 1 on real prompt tokens and response tokens
    response_mask: torch.Tensor  # (B*K, T): 1 on response tokens up to and including the stop
    prompt_width: int  # P
    finished: torch.Tensor  # (B*K,) bool: a stop token (end of turn, EOS) was emitted


@torch.no_grad()
def sample_tokens(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_texts: Sequence[str],
    params: SamplingParams,
) -> SampledTokens:
    """Sample ``params.num_samples`` continuations of each prompt text in one ``generate`` call.

    Rows come out grouped by prompt: rows ``i*K .. i*K+K-1`` are prompt i's samples.
    """
    prepare_tokenizer(tokenizer)
    fmt = chat_for(tokenizer)
    enc = tokenizer.pad({"input_ids": fmt.encode(prompt_texts)}, padding=True, return_tensors="pt")
    limit = context_length(model)
    lengths = enc["attention_mask"].sum(dim=1)
    too_long = [i for i, n in enumerate(lengths.tolist()) if n + params.max_new_tokens > limit]
    if too_long:
        raise PromptTooLongError(
            f"{len(too_long)} prompt(s) (first: #{too_long[0]}, {int(lengths[too_long[0]])} tokens) "
            f"plus max_new_tokens={params.max_new_tokens} exceed the model's context of {limit} tokens."
        )
    device = next(model.parameters()).device
    input_ids, attention_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    if params.seed is not None:
        torch.manual_seed(params.seed)
    sampling = params.temperature > 0
    # The model's own end-of-turn and EOS tokens stop it (modeling.ml.chat); an end of turn
    # written as text of several tokens (Pairwise's markers chosen for a foreign tokenizer)
    # stops it through transformers' stop strings.
    stop_ids = list(fmt.stop_token_ids)
    text_stop = fmt.end_of_turn and tokenizer.convert_tokens_to_ids(fmt.end_of_turn) not in stop_ids
    extra = {"stop_strings": list(fmt.stop_strings), "tokenizer": tokenizer} if text_stop else {}
    suppressed = _suppressed_ids(tokenizer, fmt)
    out = cast("GenerationMixin", model).generate(  # causal LMs mix generation in
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=sampling,
        temperature=params.temperature if sampling else None,
        top_p=params.top_p if sampling else None,
        top_k=0 if sampling else None,
        max_new_tokens=params.max_new_tokens,
        num_return_sequences=params.num_samples,
        eos_token_id=stop_ids or None,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=suppressed or None,
        use_cache=True,
        **extra,
    )
    width = input_ids.shape[1]
    response = out[:, width:]
    is_stop = torch.isin(response, torch.tensor(stop_ids, device=response.device))
    if text_stop:
        lengths_ = _stop_string_lengths(tokenizer, fmt, response)
        for row, n in enumerate(lengths_):
            if n is not None:
                is_stop[row, n - 1] = True
    # Everything after the first stop is padding that generate filled in.
    after_first_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0
    response_mask = (~after_first_stop).long()
    prompt_mask = attention_mask.repeat_interleave(params.num_samples, dim=0)
    return SampledTokens(
        sequences=out,
        attention_mask=torch.cat([prompt_mask, response_mask], dim=1),
        response_mask=response_mask,
        prompt_width=width,
        finished=is_stop.any(dim=1),
    )


def decode_responses(tokenizer: PreTrainedTokenizerBase, sampled: SampledTokens) -> list[str]:
    rows = []
    response = sampled.sequences[:, sampled.prompt_width :]
    for ids, mask in zip(response, sampled.response_mask, strict=True):
        kept = ids[mask.bool()].tolist()
        text = cast(str, tokenizer.decode(kept, skip_special_tokens=True))
        rows.append(chat_for(tokenizer).clean(text))
    return rows


@torch.no_grad()
def _response_logprobs(model: PreTrainedModel, sampled: SampledTokens) -> list[tuple[float, ...]]:
    """log p(token) of each sampled response token under ``model`` (temperature 1, no
    nucleus cut): what ``SamplingParams.logprobs`` asks for, as a server's ``logprobs``."""
    from rlhf.ml.ppo.model import reference_logprobs

    values = reference_logprobs(
        model, sampled.sequences, sampled.attention_mask, sampled.prompt_width
    )
    return [
        tuple(row[mask.bool()].tolist())
        for row, mask in zip(values, sampled.response_mask, strict=True)
    ]


class LocalGenerator:
    """Generates with a transformers causal LM held in this process.

    ``max_batch_rows`` bounds prompts×samples per ``generate`` call (memory, not speed).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str = "local",
        max_batch_rows: int = 512,
    ) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_batch_rows = max_batch_rows
        prepare_tokenizer(tokenizer)

    @classmethod
    def load(
        cls, path: str | Path, *, device: str | None = None, name: str | None = None
    ) -> LocalGenerator:
        from modeling.ml.tokenizer import tokenizer_load
        from rlhf.ml.policy_io import causal_lm_load

        model = causal_lm_load(path, device=device).eval()
        return cls(model, tokenizer_load(path), name=name or str(path))

    def generate(self, dialogues: Sequence[Dialogue], params: SamplingParams) -> GenerationResult:
        require_prompts(dialogues)
        fmt = chat_for(self.tokenizer)
        texts = [fmt.prompt(d) for d in dialogues]
        per_call = max(1, self.max_batch_rows // params.num_samples)
        samples: list[list[Generation]] = []
        prompt_tokens = completion_tokens = 0
        was_training = self.model.training
        self.model.eval()
        start = time.perf_counter()
        try:
            for lo in range(0, len(texts), per_call):
                chunk = texts[lo : lo + per_call]
                sampled = sample_tokens(self.model, self.tokenizer, chunk, params)
                decoded = decode_responses(self.tokenizer, sampled)
                counts = sampled.response_mask.sum(dim=1).tolist()
                finished = sampled.finished.tolist()
                k = params.num_samples
                logprobs = _response_logprobs(self.model, sampled) if params.logprobs else None
                for i in range(len(chunk)):
                    samples.append(
                        [
                            Generation(
                                decoded[r],
                                int(counts[r]),
                                bool(finished[r]),
                                logprobs[r] if logprobs is not None else None,
                            )
                            for r in range(i * k, i * k + k)
                        ]
                    )
                completion_tokens += int(sum(counts))
                prompt_tokens += int(sampled.attention_mask[:, : sampled.prompt_width].sum()) // k
        finally:
            self.model.train(was_training)
        return GenerationResult(
            samples=samples,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=time.perf_counter() - start,
            backend="local",
            model=self.name,
            params=params,
        )
