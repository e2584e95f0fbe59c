"""Generation through an OpenAI-compatible completions server (vLLM, TGI, llama.cpp…).

We send the prompt already rendered with ``modeling.ml.chat.render_prompt`` to
``POST {base_url}/v1/completions`` with ``stop=[END_OF_TURN]``, so the server applies no
chat template of its own and the text a reward model later scores is exactly what we
rendered. Standard library HTTP only (``urllib``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlsplit

from modeling.ml.chat import END_OF_TURN, render_prompt
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
    """Generates through ``{base_url}/v1/completions``; ``model`` is the served model name."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
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
        texts = [render_prompt(d) for d in dialogues]
        k = params.num_samples
        samples: list[list[Generation]] = []
        prompt_tokens = completion_tokens = 0
        start = time.perf_counter()
        for lo in range(0, len(texts), self.prompts_per_request):
            chunk = texts[lo : lo + self.prompts_per_request]
            body = {
                "model": self.model,
                "prompt": chunk,
                "n": k,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "max_tokens": params.max_new_tokens,
                "stop": [END_OF_TURN],
            }
            if params.seed is not None:
                body["seed"] = params.seed
            reply = self._post("/v1/completions", body)
            choices = reply.get("choices")
            if not isinstance(choices, list) or len(choices) != len(chunk) * k:
                raise RemoteServerError(
                    f"Expected {len(chunk) * k} choices from {self.base_url}, got "
                    f"{len(choices) if isinstance(choices, list) else 'none'}."
                )
            # The protocol numbers choices prompt-major: index = prompt * n + sample.
            choices = sorted(choices, key=lambda c: c.get("index", 0))
            for i in range(len(chunk)):
                row = choices[i * k : i * k + k]
                samples.append(
                    [
                        Generation(
                            text=str(c.get("text", "")).split(END_OF_TURN)[0].strip(),
                            completion_tokens=None,
                            finished=c.get("finish_reason") == "stop",
                        )
                        for c in row
                    ]
                )
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
