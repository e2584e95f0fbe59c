"""Sampling responses from a policy: one interface (``Generator``), two backends.

- ``LocalGenerator``: transformers in this process, batched with left padding, KV cache,
  several samples per prompt in one ``generate`` call, stop at the model's end of turn.
- ``RemoteGenerator``: any OpenAI-compatible ``/v1/completions`` server (vLLM, TGI) by URL.

Both take dialogues (lists of ``{"role", "content"}`` turns), render them in the policy's
chat template (``modeling.ml.chat.chat_for``) and return a ``GenerationResult``. No Django.
"""

from rlhf.ml.generation.base import (
    Generation,
    GenerationError,
    GenerationResult,
    Generator,
    PromptTooLongError,
    SamplingParams,
)

__all__ = [
    "Generation",
    "GenerationError",
    "GenerationResult",
    "Generator",
    "PromptTooLongError",
    "SamplingParams",
]
