"""A real HTTP server speaking enough of the OpenAI completions protocol for the remote
generation backend's tests (``completions_server`` yields its base URL)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modeling.ml.chat import END_OF_TURN


class Completions(BaseHTTPRequestHandler):
    """Speaks enough of the OpenAI completions protocol: deterministic text per (prompt, n),
    token log-probabilities when asked (``logprobs``); ``short_by`` drops that many choices,
    as a server that ignores ``n`` does."""

    seen: list[dict] = []
    short_by = 0

    def do_POST(self):  # noqa: N802 - http.server's naming
        if self.path != "/v1/completions":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        seed = f" s{body['seed']}" if "seed" in body else ""
        choices = [
            {
                "index": i * body["n"] + j,
                # the seed shows, so two draws with different seeds differ
                "text": f"answer {i}.{j}{seed}{END_OF_TURN}ignored",
                "finish_reason": "stop",
            }
            for i in range(len(prompts))
            for j in range(body["n"])
        ]
        if body.get("logprobs"):
            for c in choices:
                c["logprobs"] = {"tokens": ["answer", " 0"], "token_logprobs": [-0.5, -1.25]}
        choices = choices[: len(choices) - type(self).short_by]
        choices.reverse()  # servers may stream choices out of order
        payload = json.dumps(
            {"choices": choices, "usage": {"prompt_tokens": 7, "completion_tokens": 11}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def completions_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Completions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Completions.seen = []
    Completions.short_by = 0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
