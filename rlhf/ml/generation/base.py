"""The generation interface shared by the local and remote backends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Dialogue = Sequence[Mapping[str, str]]


class GenerationError(RuntimeError):
    """Generation could not run; the message says why in terms a user can act on."""


class PromptTooLongError(GenerationError, ValueError):
    """A prompt plus ``max_new_tokens`` does not fit the model's context."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults follow Llama 2's RLHF sampling (temperature 1, nucleus off)."""

    temperature: float = 1.0  # 0 means greedy decoding
    top_p: float = 1.0  # nucleus sampling mass; 1.0 keeps the full distribution
    max_new_tokens: int = 128  # hard cap on response length; the end of turn usually stops earlier
    num_samples: int = 1  # samples per prompt, drawn in the same call
    seed: int | None = None  # fixes the sampling RNG for reproducible runs
    logprobs: bool = False  # also return each sampled token's log-probability

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_new_tokens < 1 or self.num_samples < 1:
            raise ValueError("max_new_tokens and num_samples must be >= 1")

    def as_provenance(self) -> dict:
        """What a ``Response.sampling`` field records."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Generation:
    """One sampled response."""

    text: str
    completion_tokens: int | None  # None when the backend does not report per-sample counts
    finished: bool  # True when a stop (end of turn, EOS) ended it, not the length cap
    # log p(token) of each sampled token under the sampling policy, when asked for
    token_logprobs: tuple[float, ...] | None = None


@dataclass(frozen=True)
class GenerationResult:
    """``samples[i][j]`` is sample j of prompt i."""

    samples: list[list[Generation]]
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    backend: str
    model: str
    params: SamplingParams = field(default_factory=SamplingParams)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def texts(self) -> list[list[str]]:
        return [[g.text for g in row] for row in self.samples]


class Generator(Protocol):
    name: str

    def generate(
        self, dialogues: Sequence[Dialogue], params: SamplingParams
    ) -> GenerationResult: ...


def require_prompts(dialogues: Sequence[Dialogue]) -> None:
    if not dialogues:
        raise GenerationError("The prompt set is empty: there is nothing to generate from.")
    for i, turns in enumerate(dialogues):
        if not turns:
            raise GenerationError(f"Prompt {i} has no turns.")
