"""Supervised fine-tuning on demonstrations: the loss on the response tokens only.

    trainer = SFTTrainer.from_pretrained(base_dir, SFTConfig())
    steps = trainer.train(demonstrations, on_step=print, state=TrainState(work / "state", 5))
    trainer.save(out_dir)        # a plain causal-LM folder + tokenizer, LoRA merged

``demonstrations`` are ``(turns, response)`` pairs: the dialogue as ``[{"role",
"content"}, ...]`` ending with the user's turn, and the ideal assistant response. Each is
tokenized through the model's own chat template (``modeling.ml.chat``) by
``rejection_sampling.sft.build_sft_batch``, which masks the prompt and the padding, so the
objective is Llama 2's (§3.1: "we zero-out the loss on tokens from the user prompt"):

    L(θ) = − Σ_t∈response log π_θ(y_t | x, y_<t) / |response tokens in the batch|

one AdamW step per ``batch_size`` demonstrations, ``epochs`` passes, the learning rate on
a cosine schedule from ``learning_rate`` (Llama 2: 2e-5, weight decay 0.1, 2 epochs).

The order of the demonstrations is a pure function of the seed and the epoch, so a run
resumed from a ``TrainState`` replays it, skips the steps it already did and ends with
the same steps (and, on the CPU, the same weights) as one never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modeling.ml.lora import gradient_checkpointing_enable, lora_merge, lora_wrap
from rlhf.ml.policy_io import causal_lm_load, policy_write
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.prompts import RewardFn
from rlhf.ml.rejection_sampling.sft import IGNORE_INDEX, build_sft_batch
from rlhf.ml.sft.config import SFTConfig
from rlhf.ml.train_state import TrainState

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Demonstration = tuple[Sequence[dict], str]  # (dialogue turns ending with the user's, response)
ROLES = ("system", "user", "assistant")


def check_demonstrations(data: Sequence[Demonstration]) -> None:
    """Raise ValueError naming the first demonstration that is not ``(turns, response)``
    with turns ``[{"role", "content"}, ...]`` ending with the user's and a response that is
    not blank."""
    if not data:
        raise ValueError(
            "No demonstrations to fine-tune on: import some into the batches, or write them "
            "on the live page."
        )
    for i, item in enumerate(data):
        where = f"Demonstration {i}"
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValueError(f"{where} must be a (turns, response) pair.")
        turns, response = item
        if not isinstance(turns, Sequence) or isinstance(turns, str) or not turns:
            raise ValueError(f"{where}: the dialogue must be a non-empty list of turns.")
        for j, turn in enumerate(turns):
            if not isinstance(turn, dict) or turn.get("role") not in ROLES:
                raise ValueError(
                    f"{where}, turn {j}: must be {{'role': one of {', '.join(ROLES)}, "
                    "'content': text}."
                )
            if not isinstance(turn.get("content"), str):
                raise ValueError(f"{where}, turn {j}: 'content' must be text.")
        if turns[-1]["role"] != "user":
            raise ValueError(f"{where}: the dialogue must end with the user's turn.")
        if not isinstance(response, str) or not response.strip():
            raise ValueError(f"{where}: the response is empty.")


def data_fingerprint(data: Sequence[Demonstration]) -> str:
    """SHA-256 of the demonstrations in order: a saved state belongs to exactly these."""
    digest = hashlib.sha256()
    for turns, response in data:
        digest.update(json.dumps([list(turns), response], sort_keys=True).encode())
    return digest.hexdigest()


def step_order(n_items: int, *, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """The demonstrations of every optimizer step of the run: each epoch a fresh shuffle
    (``random.Random(seed * 1000 + epoch)``) cut into batches, so any step's batch is known
    without having run the ones before it."""
    order: list[list[int]] = []
    for epoch in range(epochs):
        idx = list(range(n_items))
        random.Random(seed * 1000 + epoch).shuffle(idx)
        order += [idx[lo : lo + batch_size] for lo in range(0, n_items, batch_size)]
    return order


def lr_multiplier(step: int, total: int, config: SFTConfig) -> float:
    """The learning-rate factor of 0-based ``step``: linear warm-up over
    ``ceil(warmup_ratio · total)`` steps, then constant or a half cosine down to 0 (as
    ``transformers``' cosine schedule)."""
    warmup = math.ceil(config.warmup_ratio * total)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.lr_schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class SFTTrainer:
    """Fine-tunes a causal LM on demonstrations. ``reward`` and ``reference`` are accepted
    for the trainers' common signature and unused: SFT needs neither."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: SFTConfig,
        *,
        reward: RewardFn | None = None,
        reference: PreTrainedModel | None = None,
    ) -> None:
        from modeling.ml.tokenizer import pad_token_set

        self.config, self.tokenizer = config, tokenizer
        if tokenizer.pad_token_id is None:
            pad_token_set(tokenizer)
        torch.manual_seed(config.seed)
        if config.gradient_checkpointing:
            gradient_checkpointing_enable(model)
        self.model: Any = (
            lora_wrap(model, config.lora, task_type="CAUSAL_LM") if config.lora.enabled else model
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )
        self.max_length = config.max_length or int(
            getattr(model.config, "max_position_embeddings", 2048)
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: SFTConfig,
        *,
        reward: RewardFn | None = None,
        reference_path: str | Path | None = None,
        device: str | None = None,
    ) -> SFTTrainer:
        """The model and tokenizer of a local folder: on CUDA when there is one (bfloat16
        when ``config.bf16``), float32 on the CPU."""
        from modeling.ml.tokenizer import tokenizer_load

        lm = causal_lm_load(path, bf16=config.bf16, device=device)
        return cls(lm, tokenizer_load(path), config, reward=reward)

    def total_steps(self, n_items: int) -> int:
        """Optimizer steps ``train`` runs on ``n_items`` demonstrations."""
        return self.config.epochs * math.ceil(n_items / self.config.batch_size)

    def train(
        self,
        data: Sequence[Demonstration],
        *,
        on_step: Callable[[dict], None] | None = None,
        state: TrainState | None = None,
    ) -> list[dict]:
        """One optimizer step per batch of demonstrations for ``config.epochs`` epochs;
        returns each step's metrics (also passed to ``on_step``, after the step's state is
        saved): ``step``, ``total``, ``loss`` (mean NLL per response token), ``seconds``,
        ``learning_rate``, ``grad_norm`` (before clipping), ``num_tokens`` (response tokens
        trained on), ``mean_token_accuracy`` (share of them the model predicts as its top
        token) and ``epoch`` (fractional). With ``state``, a saved state is restored first
        and the run continues after its step."""
        config = self.config
        check_demonstrations(data)
        fingerprint = data_fingerprint(data)
        total = self.total_steps(len(data))
        order = step_order(
            len(data), batch_size=config.batch_size, epochs=config.epochs, seed=config.seed
        )
        start = state.restore(self.model, self.optimizer) if state is not None else 0
        if start and state is not None and state.extra.get("data") != fingerprint:
            raise ValueError(
                f"The saved SFT state {state.path} was made for other demonstrations; "
                "remove it to start over."
            )
        steps_per_epoch = math.ceil(len(data) / config.batch_size)
        device = next(self.model.parameters()).device
        history: list[dict] = []
        self.model.train()
        for step in range(start + 1, total + 1):
            t0 = time.perf_counter()
            batch = build_sft_batch(
                self.tokenizer, [data[i] for i in order[step - 1]], self.max_length
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            lr = config.learning_rate * lr_multiplier(step - 1, total, config)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            out = self.model(**batch)
            loss = out.loss
            if not torch.isfinite(loss):
                raise NonFiniteError(
                    f"The SFT loss became {loss.item()} at step {step} of {total}."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], config.max_grad_norm
            )
            self.optimizer.step()
            with torch.no_grad():
                # position t predicts token t + 1: the labels the loss used, shifted
                targets = batch["labels"][:, 1:]
                trained = targets != IGNORE_INDEX
                hits = (out.logits[:, :-1].argmax(-1) == targets) & trained
                n_tokens = int(trained.sum())
            metrics = {
                "step": step,
                "total": total,
                "loss": loss.item(),
                "seconds": time.perf_counter() - t0,
                "learning_rate": lr,
                "grad_norm": float(grad_norm),
                "num_tokens": n_tokens,
                "mean_token_accuracy": int(hits.sum()) / max(1, n_tokens),
                "epoch": step / steps_per_epoch,
            }
            history.append(metrics)
            if (
                on_step is not None
            ):  # before the save: a state never runs ahead of the steps reported
                on_step(metrics)
            if state is not None:
                state.save_if_due(
                    step, total, self.model, self.optimizer, extra={"data": fingerprint}
                )
        self.model.eval()
        return history

    def save(self, out_dir: str | Path) -> Path:
        """Write the policy as a causal-LM checkpoint with its tokenizer, atomically. LoRA
        adapters are merged into the weights first (training cannot go on after that)."""
        if self.config.lora.enabled:
            self.model = lora_merge(self.model)
        return policy_write(self.model, self.tokenizer, out_dir)
