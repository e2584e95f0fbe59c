"""Loading a reward model as a ``ScoreFn`` and checking it speaks the policy's tokenizer.

The modeling app owns reward models (``modeling.ml.inference.RewardScorer``); when it is not
installed we fall back to a sequence-classification checkpoint with one output, scored on
``modeling.ml.chat.render_dialogue`` exactly as RewardScorer promises. Django-free.
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


class _SequenceClassifierScorer:
    def __init__(self, path: str | Path, device: str | None = None, batch_size: int = 32):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"  # keep the response end when truncating
        self.tokenizer.truncation_side = "left"
        self.batch_size = batch_size

    def score(self, contexts: list[list[dict]], responses: list[str]) -> list[float]:
        import torch

        from modeling.ml.chat import render_dialogue

        texts = [render_dialogue(c, r) for c, r in zip(contexts, responses, strict=True)]
        limit = int(getattr(self.model.config, "max_position_embeddings", 2048))
        out: list[float] = []
        with torch.no_grad():
            for lo in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[lo : lo + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=limit,
                    add_special_tokens=False,
                )
                logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
                out.extend(logits[:, 0].float().tolist())
        return out


def load_score_fn(path: str | Path, device: str | None = None) -> ScoreFn:
    try:
        from modeling.ml.inference import RewardScorer  # the modeling app's scorer, once present
    except ImportError:
        return _SequenceClassifierScorer(path, device).score
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
