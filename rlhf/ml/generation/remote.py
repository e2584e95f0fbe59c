"""Generation through an OpenAI-compatible completions server (vLLM, TGI, llama.cpp…).

We send the prompt already rendered in the policy's chat template (``modeling.ml.chat``,
read from the policy's local tokenizer) to ``POST {base_url}/v1/completions`` with the
template's stop strings and stop token ids, so the server applies no chat template of its
own and the text a reward model later scores is exactly what we rendered. Several samples
per prompt (``n``) come in one request; a server that returns fewer is an error, never a
silently short batch. With ``SamplingParams.logprobs`` each sample carries its tokens'
log-probabilities (``logprobs: 1``). ``add_special_tokens: false`` (vLLM) keeps the server
from adding a second BOS: the rendered text carries the one the template wants.
Standard library HTTP only (``urllib``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from modeling.ml.chat import ChatFormat, chat_for
from rlhf.ml.generation.base import (
    Dialogue,
    Generation,
    GenerationError,
    GenerationResult,
    SamplingParams,
    require_prompts,
)

# How much of an error answer's body goes into the stage error.
ERROR_EXCERPT_CHARS = 120


class RemoteServerError(GenerationError):
    """The server could not be reached or answered with something other than completions."""


class RemoteGenerator:
    """Generates through ``{base_url}/v1/completions``; ``model`` is the served model name,
    ``tokenizer`` the policy's own (its chat template renders the prompts; default: the
    tokenizer at ``model`` when that is a local folder)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: Any = None,
        api_key: str = "",
        timeout: float = 120.0,
        prompts_per_request: int = 32,
    ):
        if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
            # urllib also opens file:// and ftp://: never let a setting read the worker's disk.
            raise RemoteServerError(
                f"The inference server URL must be http:// or https://, not {base_url[:80]!r}."
            )
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self.model, self.api_key, self.timeout = model, api_key, timeout
        self.prompts_per_request = prompts_per_request
        self.name = f"{model}@{self.base_url}"
        self.tokenizer = tokenizer

    def chat(self) -> ChatFormat:
        if self.tokenizer is None:
            from modeling.ml.tokenizer import tokenizer_load

            self.tokenizer = tokenizer_load(self.model)
        return chat_for(self.tokenizer)

    def _prompt_text(self, fmt: ChatFormat, dialogue: Dialogue) -> str:
        bos = self.tokenizer.bos_token if fmt.add_bos and self.tokenizer.bos_token else ""
        return bos + fmt.prompt(dialogue)

    def _post(self, path: str, body: dict) -> dict:
        url = f"{self.base_url}{path}"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.loads(reply.read().decode())
        except urllib.error.HTTPError as exc:
            # A short, one-line excerpt: the stage error is shown on pages and in the API.
            detail = " ".join(exc.read(4 * ERROR_EXCERPT_CHARS).decode(errors="replace").split())
            if len(detail) > ERROR_EXCERPT_CHARS:
                detail = detail[:ERROR_EXCERPT_CHARS] + "…"
            raise RemoteServerError(f"{url} answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteServerError(
                f"Cannot reach the inference server at {self.base_url} ({reason}). "
                "Is it running, and is the URL right?"
            ) from exc
        except json.JSONDecodeError as exc:
            raise RemoteServerError(f"{url} did not answer with JSON.") from exc

    def generate(self, dialogues: Sequence[Dialogue], params: SamplingParams) -> GenerationResult:
        require_prompts(dialogues)
        fmt = self.chat()
        texts = [self._prompt_text(fmt, d) for d in dialogues]
        k = params.num_samples
        samples: list[list[Generation]] = []
        prompt_tokens = completion_tokens = 0
        start = time.perf_counter()
        for lo in range(0, len(texts), self.prompts_per_request):
            chunk = texts[lo : lo + self.prompts_per_request]
            body: dict[str, Any] = {
                "model": self.model,
                "prompt": chunk,
                "n": k,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "max_tokens": params.max_new_tokens,
                "stop": list(fmt.stop_strings),
                # vLLM: stop on the template's end-of-turn and EOS ids (special tokens are
                # skipped from the text, so the strings alone may never match), and add no BOS.
                "stop_token_ids": list(fmt.stop_token_ids),
                "add_special_tokens": False,
            }
            if params.seed is not None:
                body["seed"] = params.seed
            if params.logprobs:
                body["logprobs"] = 1
            reply = self._post("/v1/completions", body)
            choices = reply.get("choices")
            got = len(choices) if isinstance(choices, list) else 0
            if got != len(chunk) * k:
                raise RemoteServerError(
                    f"The inference server at {self.base_url} returned {got} sample(s) for "
                    f"{len(chunk)} prompt(s) × n={k}; expected {len(chunk) * k}. A server that "
                    "ignores n (several samples per prompt) cannot serve this stage: use vLLM, "
                    "or set the stage's samples per prompt to 1."
                )
            assert isinstance(choices, list)
            # The protocol numbers choices prompt-major: index = prompt * n + sample.
            choices = sorted(choices, key=lambda c: c.get("index", 0))
            for i in range(len(chunk)):
                samples.append([_generation(fmt, c) for c in choices[i * k : i * k + k]])
            usage = reply.get("usage") or {}
            prompt_tokens += int(usage.get("prompt_tokens", 0))
            completion_tokens += int(usage.get("completion_tokens", 0))
        return GenerationResult(
            samples=samples,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=time.perf_counter() - start,
            backend="remote",
            model=self.name,
            params=params,
        )


def _generation(fmt: ChatFormat, choice: dict) -> Generation:
    logprobs = choice.get("logprobs") or {}
    token_logprobs = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
    values = (
        tuple(float(x) for x in token_logprobs if x is not None)
        if isinstance(token_logprobs, list)
        else None
    )
    return Generation(
        text=fmt.clean(str(choice.get("text", ""))),
        completion_tokens=len(values) if values is not None else None,
        finished=choice.get("finish_reason") == "stop",
        token_logprobs=values,
    )
