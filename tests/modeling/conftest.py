"""Tiny random models for the modeling tests: a tokenizer trained on the built-in corpus
and a 2-layer Llama, made once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """Path of a tiny HF causal-LM checkpoint with our tokenizer (random weights)."""
    import torch
    from transformers import LlamaForCausalLM

    from modeling.jobs import builtin_corpus
    from modeling.ml.basemodel import llama_config
    from modeling.ml.tokenizer import tokenizer_train
    from modeling.ml.training.config import BaseModelConfig

    path = tmp_path_factory.mktemp("tiny") / "base-tiny"
    tokenizer = tokenizer_train(builtin_corpus(), path, vocab_size=400)
    torch.manual_seed(0)
    cfg = BaseModelConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    LlamaForCausalLM(llama_config(cfg, tokenizer)).save_pretrained(path)
    return path


def make_pairs(n: int, *, category="helpfulness", strength="better"):
    from annotation.domain import Category, PreferencePair, Role, Turn

    return [
        PreferencePair(
            context=(Turn(Role.USER, f"How do I boil egg number {i}?"),),
            chosen=f"Boil it for ten minutes, then cool it in cold water. ({i})",
            rejected="Eggs are laid by hens.",
            strength=strength,
            category=Category(category),
        )
        for i in range(n)
    ]


@pytest.fixture(autouse=True)
def _no_stale_broker_pools():
    """Leave no broker connection pool behind: a pool opened here (default broker options)
    would be reused by a later test's real worker fixture, whose worker then never sees
    the tasks sent to it."""
    yield
    from kombu import pools

    from config.celery import app

    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def worker_models_dir(tmp_path, monkeypatch, settings):
    """Models go to a temp folder in this process AND in the worker started after it."""
    path = tmp_path / "models"
    monkeypatch.setenv("PAIRWISE_MODELS_DIR", str(path))
    settings.MODELS_DIR = path
    return path


@pytest.fixture
def fresh_broker_connections():
    """Eager tests earlier in the session may have opened a connection pool to the default
    broker folder; drop it before the worker starts (and after, for later tests)."""
    from tests.conftest import reset_celery_caches

    reset_celery_caches()
    yield
    reset_celery_caches()
