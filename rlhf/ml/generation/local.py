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

from modeling.ml.chat import END_OF_TURN, render_prompt
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
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path), int(
        getattr(config, "max_position_embeddings", 2048)
    )


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int:
    token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        raise ValueError(
            f"The tokenizer has no {END_OF_TURN!r} token; add modeling.ml.chat.SPECIAL_TOKENS."
        )
    return token_id


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding (generation continues from the right edge) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or END_OF_TURN


@dataclass(frozen=True)
class SampledTokens:
    """Token-level output of ``sample_tokens``: what PPO needs beyond the text."""

    sequences: torch.Tensor  # (B*K, P+T): left-padded prompt, then response, right-padded
    attention_mask: torch.Tensor  # (B*K, P+T): 1 on real prompt tokens and response tokens
    response_mask: torch.Tensor  # (B*K, T): 1 on response tokens up to and including END_OF_TURN
    prompt_width: int  # P
    finished: torch.Tensor  # (B*K,) bool: END_OF_TURN was emitted


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
    eot = end_of_turn_id(tokenizer)
    enc = tokenizer(list(prompt_texts), return_tensors="pt", padding=True, add_special_tokens=False)
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
    out = cast("GenerationMixin", model).generate(  # causal LMs mix generation in
        input_ids=input_ids,
        attention_mask=attention_mask,
        do_sample=sampling,
        temperature=params.temperature if sampling else None,
        top_p=params.top_p if sampling else None,
        top_k=0 if sampling else None,
        max_new_tokens=params.max_new_tokens,
        num_return_sequences=params.num_samples,
        eos_token_id=eot,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    width = input_ids.shape[1]
    response = out[:, width:]
    is_eot = response == eot
    # Everything after the first END_OF_TURN is padding that generate filled in.
    after_first_eot = (is_eot.cumsum(dim=1) - is_eot.long()) > 0
    response_mask = (~after_first_eot).long()
    prompt_mask = attention_mask.repeat_interleave(params.num_samples, dim=0)
    return SampledTokens(
        sequences=out,
        attention_mask=torch.cat([prompt_mask, response_mask], dim=1),
        response_mask=response_mask,
        prompt_width=width,
        finished=is_eot.any(dim=1),
    )


def decode_responses(tokenizer: PreTrainedTokenizerBase, sampled: SampledTokens) -> list[str]:
    rows = []
    response = sampled.sequences[:, sampled.prompt_width :]
    for ids, mask in zip(response, sampled.response_mask, strict=True):
        kept = ids[mask.bool()].tolist()
        rows.append(cast(str, tokenizer.decode(kept, skip_special_tokens=True)).strip())
    return rows


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
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model = model.to(device).eval()  # type: ignore[arg-type]  # see modeling/ml/basemodel.py
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(model, tokenizer, name=name or str(path))

    def generate(self, dialogues: Sequence[Dialogue], params: SamplingParams) -> GenerationResult:
        require_prompts(dialogues)
        texts = [render_prompt(d) for d in dialogues]
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
                for i in range(len(chunk)):
                    rows = range(i * k, i * k + k)
                    samples.append(
                        [Generation(decoded[r], int(counts[r]), bool(finished[r])) for r in rows]
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
