"""Loading a reward model as a ``ScoreFn``, and checking a folder holds one.

The modeling app owns reward models and how they score (``modeling.ml.inference.RewardScorer``);
this module only adapts it to the rlhf reward interface. A reward model reads text: it
scores the policy's DECODED responses with its own tokenizer, so any reward model (a
decoder on another vocabulary, an encoder such as MiniLM or DeBERTa) can rank any policy's
samples. Django-free.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rlhf.ml.rewards import ScoreFn


class NotARewardModelError(ValueError):
    """A folder given as a reward model that holds none."""


def tokenizer_fingerprint(path: str | Path) -> str:
    """SHA-256 of the tokenizer's vocabulary (token → id), read from its folder."""
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(path).get_vocab()
    return hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()


def reward_model_check(reward_path: str | Path, policy_path: str | Path) -> str:
    """Raise ``NotARewardModelError`` unless ``reward_path`` holds a one-output sequence
    classifier (JSON files only); return a note when it reads another tokenizer than the
    policy (it then scores the policy's decoded text), else ''."""
    folder = Path(reward_path)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise NotARewardModelError(
            f"{folder} is not a model folder (no readable config.json)"
        ) from None
    archs = config.get("architectures") or []
    labels = config.get("num_labels", len(config.get("id2label") or {}) or 2)
    if not any(str(a).endswith("ForSequenceClassification") for a in archs) or labels != 1:
        raise NotARewardModelError(
            f"{folder} holds {', '.join(map(str, archs)) or 'no architecture'}, not a reward "
            "model (a sequence classifier with one output); train one on the Models page"
        )
    if tokenizer_fingerprint(policy_path) == tokenizer_fingerprint(folder):
        return ""
    return (
        f"{folder.name} reads another tokenizer than the policy: it scores the policy's "
        "decoded text"
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
