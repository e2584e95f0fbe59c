"""The reward-model training loop (Llama 2 §3.2.2), Django-free.

``reward_model_train`` takes a checkpoint directory, training and held-out pairs and a
config; it writes a finished reward model into ``output_dir`` and returns a
``RewardTrainingResult``. The checkpoint is a decoder (``LlamaForSequenceClassification``-
style: the causal LM body with a scalar head on the last token) or an encoder (BERT,
DeBERTa, ModernBERT... with a one-output sequence-classification head); see
``modeling.ml.backbones``. Both train with the same loss, data and schedule.

- LoRA (``config.lora``): only low-rank adapters and the head train; they are merged into
  the weights when the model is written. ``config.gradient_checkpointing`` trades compute
  for activation memory.

- Optimiser and schedule: AdamW, linear warm-up over ``warmup_ratio`` of the steps, then
  cosine down to ``min_lr_ratio`` of the peak; gradients clipped to ``max_grad_norm``.
- Chosen and rejected go through the model in one forward pass (``PairCollator``).
- Devices: CPU here, CUDA with bf16 where present, several GPUs through ``accelerate``
  (``accelerate launch``) with no code change: each process takes its share of every batch.
- Resumable: every ``checkpoint_every`` optimizer steps the model, optimizer, scheduler and
  step go to ``work_dir/checkpoint`` (written then renamed). A rerun with the same arguments
  loads it, skips the micro-batches already done (the order is a pure function of the seed)
  and ends with the same number of optimizer steps as an uninterrupted run.
- Never half-written: the model is saved into ``<output_dir>.partial`` and renamed onto
  ``output_dir`` only when complete.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from modeling.ml.backbones import ENCODER, backbone_of_config
from modeling.ml.checkpoints import partial_dir, publish
from modeling.ml.lora import (
    gradient_checkpointing_enable,
    lora_merge,
    lora_summary,
    lora_wrap,
    trainable_parameters,
)
from modeling.ml.training.config import RewardTrainingConfig
from modeling.ml.training.data import EncodedPair, PairCollator, batch_order, encode_pairs
from modeling.ml.training.losses import ranking_loss_with_margin

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PAIRWISE_META = "pairwise.json"  # our metadata beside the HF files of every model we write


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total_steps: int
    loss: float
    accuracy: float  # share of training pairs so far where r_c > r_r
    eta_seconds: float
    pairs_per_second: float
    phase: str = "train"


@dataclass(frozen=True)
class RewardTrainingResult:
    output_dir: str
    steps: int
    train_pairs: int
    train_seconds: float
    pairs_per_second: float
    final_loss: float
    train_accuracy: float
    resumed_from_step: int
    # Per held-out pair: (reward of chosen, reward of rejected), in the order given.
    eval_rewards: list[tuple[float, float]] = field(default_factory=list)


def cosine_schedule(step: int, total: int, warmup_ratio: float, min_ratio: float) -> float:
    """LR multiplier: linear warm-up to 1, then cosine to ``min_ratio`` at ``total``."""
    warmup = max(1, math.ceil(warmup_ratio * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def cpu_threads(requested: int = 0) -> int:
    """torch CPU threads: ``requested``, or all cores on an idle machine but ONE when the
    machine is already loaded (load average >= cores): OpenMP threads that wait on each other
    at every barrier while the OS runs other work are several times slower than one thread
    (measured here: 2.1 s vs 11 s per step at load 22 on 2 cores)."""
    if requested:
        return requested
    cores = os.cpu_count() or 1
    return 1 if os.getloadavg()[0] >= cores else cores


def _set_threads(n: int) -> None:
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(n))


def rewards_of(
    model: PreTrainedModel, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over a batch of pairs → (chosen rewards, rejected rewards).

    A packed batch (``PairCollator(packed=True)``) runs the transformer once over each
    prompt + chosen + rejected row with its block mask and position ids, and applies the
    scalar head at each response's last token; an unpacked one runs the sequence
    classifier over chosen rows then rejected rows.
    """
    if "chosen_index" in batch:
        hidden = model.base_model(
            input_ids=batch["input_ids"],
            attention_mask=packed_attention_mask(model, batch["attention_mask"]),
            position_ids=batch["position_ids"],
        ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = torch.stack(
            [hidden[rows, batch["chosen_index"]], hidden[rows, batch["rejected_index"]]]
        )
        head = cast(torch.nn.Module, model.score)  # a submodule; nn.Module.__getattr__ is untyped
        rewards = head(last).squeeze(-1).float()
        return rewards[0], rewards[1]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    rewards = logits.squeeze(-1).float()
    half = rewards.shape[0] // 2
    return rewards[:half], rewards[half:]


def packed_attention_mask(model: PreTrainedModel, allowed: torch.Tensor) -> torch.Tensor:
    """The packed block mask as the attention implementation takes a custom 4D mask:
    booleans for SDPA, an additive float mask (0 / -inf) for the eager kernels."""
    if model.config._attn_implementation == "sdpa":
        return allowed
    blocked = torch.finfo(model.dtype).min
    return torch.zeros(allowed.shape, dtype=model.dtype, device=allowed.device).masked_fill(
        ~allowed, blocked
    )


def supports_packing(model: PreTrainedModel) -> bool:
    """Packed pairs need the backbone and scalar head apart (``base_model``, ``score``: the
    Llama family, Mistral, Qwen...) and an attention kernel that takes a custom 4D mask."""
    return (
        hasattr(model, "score")
        and getattr(model, "base_model", model) is not model
        and model.config._attn_implementation in ("sdpa", "eager")
    )


class PairScorer(torch.nn.Module):
    """The reward model behind one ``forward(batch) → (chosen, rejected)``: what the
    trainer prepares with ``accelerate``, so a multi-GPU wrapper sees every forward."""

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return rewards_of(self.model, batch)


def load_reward_model(
    checkpoint: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """The causal LM (or encoder) at ``checkpoint`` with a one-output head in place of its
    next-token (or masked-token) head, or a reward model we wrote, head included."""
    from transformers import AutoModelForSequenceClassification

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = AutoModelForSequenceClassification.from_pretrained(
        str(checkpoint),
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        local_files_only=True,
        **({"dtype": dtype} if dtype is not None else {}),
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


@torch.no_grad()
def score_encoded(
    model: PreTrainedModel,
    encoded: Sequence[EncodedPair],
    collate: PairCollator,
    batch_size: int,
    device: torch.device,
) -> list[tuple[float, float]]:
    """(r_chosen, r_rejected) for each pair, in order; batches sorted by length for speed."""
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].length)
    out: dict[int, tuple[float, float]] = {}
    for start in range(0, len(order), batch_size):
        chunk = [encoded[i] for i in order[start : start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(chunk).items()}
        rc, rr = rewards_of(model, batch)
        for j, i in enumerate(order[start : start + batch_size]):
            out[i] = (float(rc[j]), float(rr[j]))
    return [out[i] for i in range(len(encoded))]


def _save_atomic(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, output_dir: Path, meta: dict
) -> None:
    partial = partial_dir(output_dir)
    partial.mkdir()
    try:
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        (partial / PAIRWISE_META).write_text(json.dumps(meta, indent=2))
        publish(partial, output_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def _save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    stats: dict,
) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "stats": stats,
        },
        tmp,
    )
    os.replace(tmp, path)


def _load_checkpoint(path: Path) -> dict:
    """A checkpoint written by ``_save_checkpoint``: tensors and plain values only
    (``weights_only``), so a planted file cannot run code when training resumes."""
    return torch.load(path, map_location="cpu", weights_only=True)


def reward_model_train(
    *,
    checkpoint: str | Path,
    train_pairs: Sequence,
    eval_pairs: Sequence = (),
    output_dir: str | Path,
    work_dir: str | Path,
    config: RewardTrainingConfig | None = None,
    meta: dict | None = None,
    progress: Callable[[TrainingProgress], None] | None = None,
) -> RewardTrainingResult:
    """Train a reward model from ``checkpoint`` on ``train_pairs`` and score ``eval_pairs``.

    Pairs are ``annotation.domain.PreferencePair``-like (context, chosen, rejected, strength).
    ``progress`` is called after every optimizer step; an exception it raises stops the run
    (the last checkpoint stays, so a rerun resumes).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    from modeling.ml.basemodel import load_checkpoint

    config = config or RewardTrainingConfig()
    if not train_pairs:
        raise ValueError("no training pairs: the recipe selected nothing to train on")
    _set_threads(config.num_threads)
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    # A worker process runs many jobs; accelerate keeps the first job's precision in a
    # process-wide singleton and refuses a different one later. Reset that part (not the
    # process group, so a multi-GPU launch keeps its ranks).
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
    set_seed(config.seed)
    work_dir, output_dir = Path(work_dir), Path(output_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    _, tokenizer = load_checkpoint(checkpoint, load_model=False, allow_encoder=True)
    model = load_reward_model(checkpoint, tokenizer)
    encoder = backbone_of_config(model.config) == ENCODER
    if config.gradient_checkpointing:
        gradient_checkpointing_enable(model)
    # The adapters sit inside ``model``'s own layers: ``model`` trains through them, and
    # ``adapted`` is what merges them back at the end.
    adapted = lora_wrap(model, config.lora, task_type="SEQ_CLS") if config.lora.enabled else None
    trainable, total = trainable_parameters(model)
    logger.info(
        "reward model: %s, %d of %d parameters train", type(model).__name__, trainable, total
    )
    collate = PairCollator(
        tokenizer.pad_token_id,
        packed=config.pack_pairs and not encoder and supports_packing(model),
    )
    encoded = encode_pairs(
        tokenizer,
        train_pairs,
        max_length=config.max_length,
        margin=config.margin,
        encoder=encoder,
    )
    batches = batch_order(
        encoded,
        batch_size=config.batch_size,
        num_epochs=config.num_epochs,
        seed=config.seed,
        group_by_length=config.group_by_length,
    )
    total_steps = math.ceil(len(batches) / config.grad_accum_steps)

    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:  # frozen under LoRA
            continue
        (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
        eps=1e-5,
        # One fused kernel for the whole update instead of a loop over parameter tensors
        # (CPU and CUDA; bf16/fp32 parameters alike).
        fused=True,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: cosine_schedule(s, total_steps, config.warmup_ratio, config.min_lr_ratio),
    )
    ckpt_path = work_dir / "checkpoint.pt"
    start_step, stats = 0, {"loss_sum": 0.0, "correct": 0, "seen": 0, "last_loss": float("nan")}
    if ckpt_path.exists():
        state = _load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step, stats = state["step"], state["stats"]
        logger.info(
            "resuming reward-model training at step %d/%d from %s",
            start_step,
            total_steps,
            ckpt_path,
        )
    model, optimizer = accelerator.prepare(PairScorer(model), optimizer)
    rank, world = accelerator.process_index, accelerator.num_processes

    model.train()
    started = time.monotonic()
    pairs_done = 0
    step = start_step
    for micro in range(start_step * config.grad_accum_steps, len(batches)):
        ids = batches[micro]
        share = ids[rank::world] or ids[:1]
        batch = {
            k: v.to(accelerator.device) for k, v in collate([encoded[i] for i in share]).items()
        }
        with accelerator.autocast():
            rc, rr = model(batch)
            loss = ranking_loss_with_margin(rc, rr, batch["margins"])
        accelerator.backward(loss / config.grad_accum_steps)
        stats["loss_sum"] += float(loss.detach()) * len(share)
        stats["correct"] += int((rc > rr).sum())
        stats["seen"] += len(share)
        stats["last_loss"] = float(loss.detach())
        pairs_done += len(share) * world
        if (micro + 1) % config.grad_accum_steps and micro + 1 != len(batches):
            continue
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if (
            config.checkpoint_every
            and step % config.checkpoint_every == 0
            and step < total_steps
            and accelerator.is_main_process
        ):
            _save_checkpoint(
                ckpt_path, accelerator.unwrap_model(model).model, optimizer, scheduler, step, stats
            )
        elapsed = time.monotonic() - started
        rate = (step - start_step) / elapsed if elapsed else 0.0
        if progress and accelerator.is_main_process:
            progress(
                TrainingProgress(
                    step=step,
                    total_steps=total_steps,
                    loss=stats["loss_sum"] / max(stats["seen"], 1),
                    accuracy=stats["correct"] / max(stats["seen"], 1),
                    eta_seconds=(total_steps - step) / rate if rate else 0.0,
                    pairs_per_second=pairs_done / elapsed if elapsed else 0.0,
                )
            )
    train_seconds = time.monotonic() - started

    unwrapped = accelerator.unwrap_model(model).model
    eval_rewards: list[tuple[float, float]] = []
    if eval_pairs:
        if progress and accelerator.is_main_process:
            progress(
                TrainingProgress(
                    step,
                    total_steps,
                    stats["loss_sum"] / max(stats["seen"], 1),
                    stats["correct"] / max(stats["seen"], 1),
                    0.0,
                    0.0,
                    phase="evaluate",
                )
            )
        eval_encoded = encode_pairs(
            tokenizer,
            eval_pairs,
            max_length=config.max_length,
            margin=config.margin,
            encoder=encoder,
        )
        with accelerator.autocast():
            eval_rewards = score_encoded(
                unwrapped, eval_encoded, collate, config.eval_batch_size, accelerator.device
            )
    if accelerator.is_main_process:
        final = lora_merge(adapted) if adapted is not None else unwrapped
        final.config.pad_token_id = tokenizer.pad_token_id
        _save_atomic(
            final.to(torch.float32),
            tokenizer,
            output_dir,
            {
                "kind": "reward_model",
                "backbone": "encoder" if encoder else "decoder",
                "max_length": config.max_length,
                "config": config.to_dict(),
                "trainable_parameters": trainable,
                **lora_summary(config.lora),
                **(meta or {}),
            },
        )
        ckpt_path.unlink(missing_ok=True)
    return RewardTrainingResult(
        output_dir=str(output_dir),
        steps=step,
        train_pairs=len(train_pairs),
        train_seconds=train_seconds,
        pairs_per_second=pairs_done / train_seconds if train_seconds else 0.0,
        final_loss=stats["loss_sum"] / max(stats["seen"], 1),
        train_accuracy=stats["correct"] / max(stats["seen"], 1),
        resumed_from_step=start_step,
        eval_rewards=eval_rewards,
    )
