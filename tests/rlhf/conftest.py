"""Tiny models for the rlhf tests: made locally in a temp dir, never downloaded."""

from __future__ import annotations

import pytest

from tests.rlhf.fake_server import completions_server  # noqa: F401 - a fixture for the rlhf tests


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    from rlhf.ml.tiny import make_tiny_policy

    path = tmp_path_factory.mktemp("tiny-policy")
    make_tiny_policy(path)
    return path


@pytest.fixture
def tiny_policy(tiny_policy_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_policy_dir), AutoTokenizer.from_pretrained(
        tiny_policy_dir
    )


SMALL = {
    "max_prompts": 8,
    "eval_fraction": 0.25,
    "rejection_sampling": {"num_samples": 2, "epochs": 1},
    "ppo": {"steps": 2, "rollout_batch_size": 4, "mini_batch_size": 2},
    "sampling": {"max_new_tokens": 8},
    "accept_min_win_rate": 0.0,
    "next_batch_prompts": 4,
}


@pytest.fixture
def rlhf_models(tmp_path, settings):
    """MODELS_DIR in a temp dir with a tiny base policy and two tiny reward models."""
    from rlhf.ml.scoring import make_tiny_reward_model
    from rlhf.ml.tiny import make_tiny_policy

    settings.MODELS_DIR = tmp_path / "models"
    base = settings.MODELS_DIR / "base"
    make_tiny_policy(base)
    make_tiny_reward_model(tmp_path / "rm-helpful", base, seed=1)
    make_tiny_reward_model(tmp_path / "rm-safety", base, seed=2)
    return {"base": base, "helpful": tmp_path / "rm-helpful", "safety": tmp_path / "rm-safety"}


def frozen_batch(n: int = 6, name: str | None = None):
    """A frozen batch of ``n`` labelled comparisons (half helpfulness, half safety)."""
    from annotation import services
    from annotation.domain import Category, Role, Turn
    from annotation.models import Batch
    from annotation.queue import assignments, labels, rules
    from tests.factories import BatchFactory, UserFactory, make_comparison

    batch = BatchFactory(**({"name": name} if name else {}))
    words = ["egg", "water", "time", "day", "way", "thing", "help", "answer"]
    for i in range(n):
        category = Category.SAFETY if i % 2 else Category.HELPFULNESS
        make_comparison(
            batch,
            category=category,
            turns=[Turn(Role.USER, f"tell me about {words[i % len(words)]} {batch.name} {i}")],
        )
    services.batch_transition(batch=batch, to=Batch.Status.OPEN)
    labeller = UserFactory(role="annotator")
    while (a := assignments.assignment_next(annotator=labeller)) is not None:
        extra = (
            {"safety_a": "safe", "safety_b": "unsafe"} if a.comparison.category == "safety" else {}
        )
        labels.label_submit(
            assignment_id=a.pk, annotator=labeller, data=rules.LabelInput("A", "better", **extra)
        )
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    return services.batch_transition(batch=batch, to=Batch.Status.FROZEN)


def demonstration_batch(n: int = 6, name: str | None = None):
    """A frozen batch of ``n`` demonstrations (an ideal response per prompt) and no
    comparisons: what an SFT iteration trains on."""
    from annotation import services
    from annotation.domain import Role, Turn
    from annotation.models import Batch
    from tests.factories import BatchFactory

    batch = BatchFactory(**({"name": name} if name else {}))
    words = ["egg", "water", "time", "day", "way", "thing", "help", "answer"]
    for i in range(n):
        services.demonstration_create(
            batch=batch,
            turns=[Turn(Role.USER, f"how do i {words[i % len(words)]} {batch.name} {i}")],
            response=f"you can {words[(i + 1) % len(words)]} it with hot water",
            source="test",
        )
    services.batch_transition(batch=batch, to=Batch.Status.OPEN)
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    return services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
