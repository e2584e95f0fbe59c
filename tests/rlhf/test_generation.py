"""The generation layer: local batched backend and the remote backend against a real server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modeling.ml.chat import END_OF_TURN
from rlhf.ml.generation import GenerationError, PromptTooLongError, SamplingParams
from rlhf.ml.generation.local import LocalGenerator
from rlhf.ml.generation.remote import RemoteGenerator, RemoteServerError
from rlhf.ml.tiny import make_tiny_tokenizer
from tests.rlhf.fake_server import Completions as _Completions

DIALOGUES = [
    [{"role": "user", "content": "how do i boil an egg"}],
    [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "help me"},
    ],
    [{"role": "user", "content": "tell me about water"}],
]


def test_local_returns_k_samples_per_prompt_with_counts_and_timing(tiny_policy):
    model, tokenizer = tiny_policy
    gen = LocalGenerator(model, tokenizer, name="tiny")
    result = gen.generate(DIALOGUES, SamplingParams(max_new_tokens=12, num_samples=4, seed=0))
    assert [len(row) for row in result.samples] == [4, 4, 4]
    assert all(0 < g.completion_tokens <= 12 for row in result.samples for g in row)
    assert result.completion_tokens == sum(
        g.completion_tokens for row in result.samples for g in row
    )
    assert result.seconds > 0 and result.tokens_per_second > 0
    assert all(END_OF_TURN not in g.text for row in result.samples for g in row)


def test_local_token_logprobs_when_asked(tiny_policy):
    model, tokenizer = tiny_policy
    gen = LocalGenerator(model, tokenizer)
    asked = gen.generate(DIALOGUES, SamplingParams(max_new_tokens=6, num_samples=2, logprobs=True))
    for g in (g for row in asked.samples for g in row):
        assert g.token_logprobs is not None and len(g.token_logprobs) == g.completion_tokens
        assert all(lp <= 0 for lp in g.token_logprobs)
    plain = gen.generate(DIALOGUES[:1], SamplingParams(max_new_tokens=6))
    assert plain.samples[0][0].token_logprobs is None


def test_local_batched_equals_one_by_one_when_greedy(tiny_policy):
    """Left padding and the KV cache must not change what a prompt produces."""
    model, tokenizer = tiny_policy
    gen = LocalGenerator(model, tokenizer)
    params = SamplingParams(temperature=0, max_new_tokens=8)
    batched = gen.generate(DIALOGUES, params).texts()
    alone = [gen.generate([d], params).texts()[0] for d in DIALOGUES]
    assert batched == alone


def test_local_stops_at_end_of_turn(tiny_policy):
    import torch

    model, tokenizer = tiny_policy
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    with torch.no_grad():  # make END_OF_TURN the only likely token
        model.lm_head.weight.zero_()
        model.lm_head.weight[eot, :] = 5.0 * model.model.norm.weight.sign()
    result = LocalGenerator(model, tokenizer).generate(
        DIALOGUES[:1], SamplingParams(temperature=0, max_new_tokens=20)
    )
    g = result.samples[0][0]
    assert g.finished and g.completion_tokens < 20


def test_local_rejects_empty_and_too_long_prompts(tiny_policy):
    model, tokenizer = tiny_policy
    gen = LocalGenerator(model, tokenizer)
    with pytest.raises(GenerationError, match="empty"):
        gen.generate([], SamplingParams())
    long = [{"role": "user", "content": " ".join(["egg"] * 300)}]
    with pytest.raises(PromptTooLongError, match="context of 256"):
        gen.generate([long], SamplingParams(max_new_tokens=8))


def test_remote_against_a_real_http_server(completions_server):
    gen = RemoteGenerator(
        completions_server + "/v1", "policy", tokenizer=make_tiny_tokenizer(), prompts_per_request=2
    )
    result = gen.generate(
        DIALOGUES, SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=16, num_samples=2)
    )
    assert result.texts() == [
        ["answer 0.0", "answer 0.1"],
        ["answer 1.0", "answer 1.1"],
        ["answer 0.0", "answer 0.1"],
    ]
    assert len(_Completions.seen) == 2  # 3 prompts, 2 per request
    sent = _Completions.seen[0]
    assert sent["stop"] == [END_OF_TURN] and sent["n"] == 2 and sent["max_tokens"] == 16
    assert sent["prompt"][0].startswith("<s><|user|>") and sent["prompt"][0].endswith(
        "<|assistant|>\n"
    )
    assert sent["stop_token_ids"] == [make_tiny_tokenizer().convert_tokens_to_ids(END_OF_TURN)]
    assert sent["add_special_tokens"] is False
    assert result.completion_tokens == 22 and result.backend == "remote"


def test_remote_unreachable_server_is_a_clear_error():
    gen = RemoteGenerator(
        "http://127.0.0.1:9", "policy", tokenizer=make_tiny_tokenizer(), timeout=2
    )
    with pytest.raises(RemoteServerError, match="Cannot reach the inference server"):
        gen.generate(DIALOGUES[:1], SamplingParams())


class _Failing(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        payload = ("Traceback (most recent call last):\n" + "x" * 5000).encode()
        self.send_response(500)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_remote_error_echoes_a_short_excerpt_and_only_http_urls_are_taken():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gen = RemoteGenerator(
            f"http://127.0.0.1:{server.server_address[1]}",
            "policy",
            tokenizer=make_tiny_tokenizer(),
        )
        with pytest.raises(RemoteServerError, match="answered HTTP 500") as failed:
            gen.generate(DIALOGUES[:1], SamplingParams())
    finally:
        server.shutdown()
        server.server_close()
    message = str(failed.value)
    assert "\n" not in message and len(message) < 250 and message.endswith("…")
    for url in ("file:///etc/passwd", "ftp://host/x", "localhost:8000", ""):
        with pytest.raises(RemoteServerError, match="must be http:// or https://"):
            RemoteGenerator(url, "policy")


def test_remote_speaks_the_models_own_template_with_n_stops_and_logprobs(
    completions_server, tmp_path
):
    """A Qwen2 policy folder: ChatML prompts, its end of turn and generation-config EOS as
    stops, no second BOS, several samples per prompt in one request, log-probabilities."""
    from modeling.ml.tokenizer import tokenizer_load
    from tests.chat_families import make_family_model

    tokenizer = tokenizer_load(make_family_model("qwen2", tmp_path / "qwen"))
    gen = RemoteGenerator(completions_server, "qwen-policy", tokenizer=tokenizer)
    result = gen.generate(
        DIALOGUES[:2], SamplingParams(max_new_tokens=8, num_samples=3, logprobs=True)
    )
    sent = _Completions.seen[0]
    assert sent["n"] == 3 and sent["logprobs"] == 1 and sent["add_special_tokens"] is False
    assert sent["stop"] == ["<|im_end|>", "<|endoftext|>"]
    assert sent["stop_token_ids"] == tokenizer.convert_tokens_to_ids(
        ["<|im_end|>", "<|endoftext|>"]
    )
    assert sent["prompt"][0] == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhow do i boil an egg<|im_end|>\n<|im_start|>assistant\n"
    )
    assert [len(row) for row in result.samples] == [3, 3]
    g = result.samples[1][2]
    assert g.text == f"answer 1.2{END_OF_TURN}ignored"  # not this template's stop: kept
    assert g.token_logprobs == (-0.5, -1.25) and g.completion_tokens == 2 and g.finished


def test_remote_server_returning_fewer_samples_than_asked_is_a_clear_error(completions_server):
    _Completions.short_by = 1
    gen = RemoteGenerator(completions_server, "policy", tokenizer=make_tiny_tokenizer())
    with pytest.raises(RemoteServerError, match=r"returned 5 sample\(s\) for 2 prompt\(s\) × n=3"):
        gen.generate(DIALOGUES[:2], SamplingParams(num_samples=3))
