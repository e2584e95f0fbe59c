"""Loading a reward model as a ``ScoreFn`` and checking it speaks the policy's tokenizer.

The modeling app owns reward models and how they score (``modeling.ml.inference.RewardScorer``);
this module only adapts it to the rlhf reward interface. Django-free.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rlhf.ml.rewards import ScoreFn


class TokenizerMismatchError(ValueError):
    """A reward model was built on a different tokenizer than the policy it judges."""


def tokenizer_fingerprint(path: str | Path) -> str:
    """SHA-256 of the tokenizer's vocabulary (token → id), read from its folder."""
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(path).get_vocab()
    return hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()


def require_same_tokenizer(policy_path: str | Path, reward_path: str | Path) -> None:
    if tokenizer_fingerprint(policy_path) != tokenizer_fingerprint(reward_path):
        raise TokenizerMismatchError(
            f"The reward model at {reward_path} uses a different tokenizer than the policy at "
            f"{policy_path}; train the reward model from the policy's base model."
        )


def load_score_fn(path: str | Path, device: str | None = None) -> ScoreFn:
    """The modeling app's ``RewardScorer`` for the reward model at ``path``, as a ``ScoreFn``."""
    from modeling.ml.inference import RewardScorer

    return RewardScorer.load(path, device=device).score


def make_tiny_reward_model(path: str | Path, policy_path: str | Path, *, seed: int = 1) -> None:
    """A randomly initialised one-output Llama classifier on the policy's tokenizer (tests, demo)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    config = AutoConfig.from_pretrained(policy_path)
    config.num_labels = 1
    torch.manual_seed(seed)
    LlamaForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(policy_path).save_pretrained(path)
