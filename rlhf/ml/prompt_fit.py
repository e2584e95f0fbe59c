"""Prompts that fit the model's context, checked once, before any sampling. Django-free.

A prompt fits when its rendered tokens plus ``max_new_tokens`` are at most the model's
context. Real dialogues (Anthropic HH has some over a thousand tokens) do not always fit,
and a user cannot shorten their data, so every stage that samples passes its prompts
through ``fit_prompts`` first, which either

- keeps the end of an over-long dialogue ("truncate_left", as reward training keeps the end
  of what it reads): whole turns are dropped from the start until the rest fits, and if the
  last turn alone is too long, its text is cut from the left to the tokens that fit; or
- leaves the prompt out ("skip").

and says how many prompts it cut or left out (``PromptFit.message``), for the stage's log
and the iteration page. ``tokenizer`` is a Hugging Face fast tokenizer (called on a list of
texts; offsets cut text at token boundaries); nothing here imports torch or transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from modeling.ml.chat import chat_for
from rlhf.ml.prompts import PromptExample

# What a stage does with a prompt that, plus ``max_new_tokens``, exceeds the model's context:
# keep the end of the dialogue (as reward training does) or leave the prompt out.
OverlongPolicy = Literal["truncate_left", "skip"]
OVERLONG_POLICIES: tuple[str, ...] = ("truncate_left", "skip")


@dataclass(frozen=True)
class PromptFit:
    """The prompts that fit (in their order; a cut prompt holds the end of its dialogue)
    and what was done to the others."""

    prompts: list[PromptExample]
    kept: list[int]  # index in the input of each prompt in ``prompts``
    truncated: int  # prompts cut from the left
    skipped: int  # prompts left out
    longest: int  # tokens of the longest over-long prompt, before the cut (0: none)
    context: int
    max_new_tokens: int
    policy: str

    @property
    def overlong(self) -> int:
        return self.truncated + self.skipped

    def message(self) -> str:
        """One line for the stage log and the page; empty when every prompt fitted."""
        if not self.overlong:
            return ""
        total = len(self.prompts) + self.skipped
        done = f"kept the end of {self.truncated}" if self.truncated else f"left out {self.skipped}"
        return (
            f"{self.overlong} of {total} prompt(s) plus max_new_tokens={self.max_new_tokens} "
            f"exceeded the model's context of {self.context} tokens (the longest: "
            f"{self.longest} tokens); {done} (sampling.overlong_prompts={self.policy})."
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "truncated": self.truncated,
            "skipped": self.skipped,
            "longest": self.longest,
            "context": self.context,
            "max_new_tokens": self.max_new_tokens,
            "policy": self.policy,
            "message": self.message(),
        }


def _token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in chat_for(tokenizer).encode(texts)]


def _prompt(tokenizer: Any, turns: Sequence[dict]) -> str:
    """The prompt as the policy is sampled from it: its model's chat template."""
    return chat_for(tokenizer).prompt(turns)


def fit_prompts(
    prompts: Sequence[PromptExample],
    tokenizer: Any,
    *,
    context: int,
    max_new_tokens: int,
    policy: str,
) -> PromptFit:
    """Fit every prompt to ``context - max_new_tokens`` tokens under ``policy``.

    Raises ValueError only when no prompt could ever fit (``max_new_tokens`` leaves no room),
    a setting to change, not data.
    """
    if policy not in OVERLONG_POLICIES:
        raise ValueError(f"overlong_prompts must be one of {OVERLONG_POLICIES}, not {policy!r}")
    limit = context - max_new_tokens
    # the shortest possible prompt: an empty user turn
    floor = _token_counts(tokenizer, [_prompt(tokenizer, [{"role": "user", "content": ""}])])[0]
    if limit <= floor:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} leaves {max(limit, 0)} of the model's "
            f"{context} tokens for the prompt; lower sampling.max_new_tokens."
        )
    counts = _token_counts(tokenizer, [_prompt(tokenizer, p.turns) for p in prompts])
    fitted: list[PromptExample] = []
    kept: list[int] = []
    truncated = skipped = longest = 0
    for i, (prompt, n) in enumerate(zip(prompts, counts, strict=True)):
        if n <= limit:
            fitted.append(prompt)
            kept.append(i)
            continue
        longest = max(longest, n)
        if policy == "skip":
            skipped += 1
            continue
        fitted.append(replace(prompt, turns=keep_end(prompt.turns, tokenizer, limit)))
        kept.append(i)
        truncated += 1
    return PromptFit(fitted, kept, truncated, skipped, longest, context, max_new_tokens, policy)


def keep_end(turns: Sequence[dict], tokenizer: Any, limit: int) -> tuple[dict, ...]:
    """The longest end of ``turns`` whose rendered prompt has at most ``limit`` tokens:
    whole turns dropped from the start, then the last turn's text cut from the left."""
    turns = tuple(turns)
    # Per-turn counts find the first turn to keep in one pass; token counts of the parts add
    # up to the whole's almost exactly (every turn ends in a special token and a newline),
    # so the check below rarely drops one more.
    parts = _token_counts(tokenizer, [_prompt(tokenizer, [t]) for t in turns])
    try:
        marker = _token_counts(tokenizer, [_prompt(tokenizer, [])])[0]
    except Exception:  # noqa: BLE001 - a template that cannot render no turns
        marker = 0  # only an estimate: the exact check below decides
    start, total = len(turns) - 1, parts[-1]
    while start > 0 and total + parts[start - 1] - marker <= limit:
        start -= 1
        total += parts[start] - marker
    while start < len(turns) - 1:
        if _token_counts(tokenizer, [_prompt(tokenizer, turns[start:])])[0] <= limit:
            return turns[start:]
        start += 1
    return (_cut_turn_left(turns[-1], tokenizer, limit),)


def _cut_turn_left(turn: dict, tokenizer: Any, limit: int) -> dict:
    """``turn`` with its text cut from the left, at a token boundary, so that it renders in
    ``limit`` tokens. The kept text is the original's end, character for character."""
    text = turn["content"]
    empty = _token_counts(tokenizer, [_prompt(tokenizer, [{**turn, "content": ""}])])[0]
    encoded = tokenizer([text], add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in encoded["offset_mapping"][0]]
    keep = min(limit - empty, len(starts))
    while keep > 0:
        cut = {**turn, "content": text[starts[len(starts) - keep] :].lstrip()}
        if _token_counts(tokenizer, [_prompt(tokenizer, [cut])])[0] <= limit:
            return cut
        keep -= 1  # the kept text alone may split into a token or two more at its edge
    return {**turn, "content": ""}
