"""Base models, Django-free: make the default one, or load any local HF causal LM.

``base_model_create`` trains the SentencePiece BPE tokenizer (``modeling.ml.tokenizer``) on
local dialogue text, builds a small ``LlamaForCausalLM`` (RMSNorm, SwiGLU, rotary
embeddings, grouped-query attention because ``num_key_value_heads < num_attention_heads``)
and pretrains it with next-token prediction for a bounded number of steps on the same text,
packed into fixed-length sequences. The directory it writes is a plain Hugging Face
checkpoint (written beside, renamed into place when complete).

``load_checkpoint`` is the one way any checkpoint directory is opened, ours or a user's
(e.g. Llama 2 weights): it explains what is wrong when the folder is missing, is not a
causal LM, or Pairwise cannot tell which chat template its tokenizer speaks
(``modeling.ml.chat``: its own, or Pairwise's markers).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modeling.ml.backbones import ENCODER, backbone_of_config
from modeling.ml.checkpoints import partial_dir, publish
from modeling.ml.training.config import BaseModelConfig

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be used, with the reason."""


@dataclass(frozen=True)
class BaseModelResult:
    output_dir: str
    parameters: int
    steps: int
    tokens_seen: int
    corpus_tokens: int
    initial_loss: float
    final_loss: float
    seconds: float


def load_checkpoint(
    path: str | Path, *, load_model: bool = True, allow_encoder: bool = False
) -> tuple[PreTrainedModel | None, PreTrainedTokenizerBase]:
    """(model or None, tokenizer) from a local HF-format causal-LM directory, or with
    ``allow_encoder`` (reward models only, never loaded here as a model) an encoder's.

    Raises ``CheckpointError`` when the folder is missing, holds no causal LM config, or its
    tokenizer has neither a chat template nor Pairwise's markers, or disagrees with the
    model's vocab.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoTokenizer

    from modeling.ml.tokenizer import pad_token_set, tokenizer_check

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path} is not a Hugging Face model folder (no config.json)")
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a model"
        raise CheckpointError(f"{path}: unreadable config.json ({exc})") from exc
    archs = config.architectures or []
    encoder = backbone_of_config(config) == ENCODER
    if encoder and (not allow_encoder or load_model):
        raise CheckpointError(
            f"{path} holds an encoder ({config.model_type}): it can start a reward model, "
            "but cannot generate, so it cannot be a policy"
        )
    if not encoder and not any(
        a.endswith(("ForCausalLM", "ForSequenceClassification")) for a in archs
    ):
        raise CheckpointError(f"{path} is not a causal LM (architectures: {archs or 'none'})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: no usable tokenizer ({exc})") from exc
    pad_token_set(tokenizer)  # as modeling.ml.tokenizer.tokenizer_load
    try:
        if encoder:  # reads plain text: no chat markers needed, only padding
            if tokenizer.pad_token_id is None:
                raise ValueError("tokenizer has no pad token")
        else:
            tokenizer_check(tokenizer)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise CheckpointError(
            f"{path}: tokenizer does not match the model: {len(tokenizer)} tokens but the model has {vocab} embeddings"
        )
    model = None
    if load_model:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    return model, tokenizer


def llama_config(cfg: BaseModelConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["LlamaForCausalLM"],
    )


def base_model_create(
    *,
    texts: Sequence[str],
    output_dir: str | Path,
    config: BaseModelConfig | None = None,
    meta: dict | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> BaseModelResult:
    """Tokenizer + small Llama pretrained on ``texts`` (dialogues rendered with the chat
    template), saved as a HF checkpoint in ``output_dir``. ``progress(step, total, loss)``."""
    import torch
    from transformers import LlamaForCausalLM

    from modeling.ml.tokenizer import tokenizer_train

    config = config or BaseModelConfig()
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("no text to build the base model from")
    if not torch.cuda.is_available():
        from modeling.ml.training.trainer import cpu_threads

        torch.set_num_threads(cpu_threads(config.num_threads))
    torch.manual_seed(config.seed)
    output_dir = Path(output_dir)
    partial = partial_dir(output_dir)
    started = time.monotonic()
    try:
        tokenizer = tokenizer_train(texts, partial, vocab_size=config.vocab_size)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # transformers wraps PreTrainedModel.to in functools.wraps, which mypy takes as unbound
        model = LlamaForCausalLM(llama_config(config, tokenizer)).to(device)  # type: ignore[arg-type]
        n_params = sum(p.numel() for p in model.parameters())

        order = list(texts)
        random.Random(config.seed).shuffle(order)
        ids: list[int] = []
        for row in tokenizer(order, add_special_tokens=False)["input_ids"]:
            ids += [tokenizer.bos_token_id, *row, tokenizer.eos_token_id]
        L = config.seq_length
        n_seq = len(ids) // L
        if n_seq < 1:
            raise ValueError(
                f"too little text to pretrain on: {len(ids)} tokens < one sequence of {L}"
            )
        data = torch.tensor(ids[: n_seq * L], dtype=torch.long).view(n_seq, L)
        # The step budget: max_steps, shrunk after a few timed steps to fit max_seconds,
        # so the cosine schedule still ends where the training does.
        budget = {"steps": config.max_steps}
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=0.1
        )
        from modeling.ml.training.trainer import cosine_schedule

        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_schedule(s, budget["steps"], 0.03, 0.1)
        )
        gen = torch.Generator().manual_seed(config.seed)
        perm = torch.randperm(n_seq, generator=gen)
        cursor, first_loss, ema = 0, float("nan"), float("nan")
        model.train()
        use_bf16 = device.type == "cuda"
        step, loop_started = 0, time.monotonic()
        while step < budget["steps"]:
            step += 1
            if cursor + config.batch_size > n_seq:
                perm, cursor = torch.randperm(n_seq, generator=gen), 0
            batch = data[perm[cursor : cursor + config.batch_size]].to(device)
            cursor += config.batch_size
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(loss.detach())
            first_loss = value if step == 1 else first_loss
            ema = value if math.isnan(ema) else 0.9 * ema + 0.1 * value
            # Re-fit the budget now and then: the machine's speed can change under load.
            if config.max_seconds and (step in (5, 25) or step % 50 == 0):
                per_step = (time.monotonic() - loop_started) / step
                remaining = config.max_seconds - (time.monotonic() - started)
                budget["steps"] = max(step, min(config.max_steps, step + int(remaining / per_step)))
            if progress:
                progress(step, budget["steps"], ema)
        model = model.to("cpu", torch.float32)
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        result = BaseModelResult(
            output_dir=str(output_dir),
            parameters=n_params,
            steps=step,
            tokens_seen=step * config.batch_size * L,
            corpus_tokens=len(ids),
            initial_loss=first_loss,
            final_loss=ema,
            seconds=time.monotonic() - started,
        )
        from modeling.ml.training.trainer import PAIRWISE_META

        (partial / PAIRWISE_META).write_text(
            json.dumps(
                {
                    "kind": "base",
                    "config": config.to_dict(),
                    "result": result.__dict__,
                    **(meta or {}),
                },
                indent=2,
            )
        )
        publish(partial, output_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return result
