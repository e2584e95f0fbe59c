"""Score (dialogue, response) pairs with a trained reward model. Django-free.

    scorer = RewardScorer.load("var/models/RM-helpfulness-V1")
    scorer.score([[{"role": "user", "content": "Hi"}]], ["Hello! How can I help?"])

Contexts are turn lists rendered in the model's chat template (``modeling.ml.chat.chat_for``;
plain Pairwise text for an encoder), truncated from the left to the length the model was
trained with, exactly as in training. A reward model reads
TEXT: it scores any policy's decoded responses, whatever tokenizer that policy has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modeling.ml.chat import Dialogue, chat_for, render_dialogue

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class RewardScorer:
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int = 512,
        device: str | torch.device | None = None,
        encoder: bool = False,
    ) -> None:
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # see basemodel.py
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.encoder = encoder  # an encoder backbone: [CLS] text [SEP] (modeling.ml.backbones)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> RewardScorer:
        """A reward model folder written by ``reward_model_train`` (HF format + pairwise.json),
        on a decoder or an encoder backbone."""
        from modeling.ml.backbones import ENCODER, backbone_of_config
        from modeling.ml.basemodel import CheckpointError, load_checkpoint
        from modeling.ml.training.trainer import PAIRWISE_META, load_reward_model

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = Path(path)
        _, tokenizer = load_checkpoint(path, load_model=False, allow_encoder=True)
        meta_file = path / PAIRWISE_META
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        if meta.get("kind") not in (None, "reward_model"):
            raise CheckpointError(f"{path} is a {meta.get('kind')} model, not a reward model")
        model = load_reward_model(path, tokenizer)
        return cls(
            model,
            tokenizer,
            max_length=int(meta.get("max_length", 512)),
            device=device,
            encoder=backbone_of_config(model.config) == ENCODER,
        )

    def score(
        self,
        contexts: Sequence[Dialogue],
        responses: Sequence[str],
        batch_size: int = 16,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[float]:
        """One scalar reward per (context, response); ``on_batch(n)`` after each batch."""
        import torch

        from modeling.ml.training.data import encode_texts

        if len(contexts) != len(responses):
            raise ValueError(f"{len(contexts)} contexts but {len(responses)} responses")
        # the model's chat template for a decoder (modeling.ml.chat); plain text for an encoder
        render = render_dialogue if self.encoder else chat_for(self.tokenizer).dialogue
        texts = [render(c, r) for c, r in zip(contexts, responses, strict=True)]
        ids = encode_texts(self.tokenizer, texts, self.max_length, encoder=self.encoder)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        scores: list[float] = [0.0] * len(ids)
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                width = max(len(ids[i]) for i in chunk)
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros_like(input_ids)
                for row, i in enumerate(chunk):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                logits = self.model(
                    input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
                for row, i in enumerate(chunk):
                    scores[i] = float(logits[row, 0])
                if on_batch:
                    on_batch(len(chunk))
        return scores
