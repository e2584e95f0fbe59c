"""Tiny models for the rlhf tests: made locally in a temp dir, never downloaded."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    from rlhf.tiny import make_tiny_policy

    path = tmp_path_factory.mktemp("tiny-policy")
    make_tiny_policy(path)
    return path


@pytest.fixture
def tiny_policy(tiny_policy_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_policy_dir), AutoTokenizer.from_pretrained(
        tiny_policy_dir
    )
