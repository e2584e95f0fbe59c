"""Frozen, documented configs for training. Plain Python: importing this needs no torch."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Self

from annotated_types import Ge, Gt, Le, Lt, MinLen

from annotation.domain import MarginTable

ALL_LINEAR = "all-linear"


class _Config:
    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, enum.Enum) else v) for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class LoraConfig:
    """LoRA for one training run; ``rank`` 0 (the default) trains every weight instead.

    Bounds are ``annotated_types`` metadata (the iteration settings validate them with the
    field's dotted path) and are checked again here for the configs that are not pydantic.
    """

    # r: rank of the update B·A; 0 turns LoRA off (full fine-tuning). Hu et al. use 1-64.
    rank: Annotated[int, Ge(0), Le(1024)] = 0
    # α: the update is scaled by α/r (Hu et al.: α fixed while r varies).
    alpha: Annotated[int, Gt(0), Le(10_000)] = 16
    # dropout on the adapter's input during training
    dropout: Annotated[float, Ge(0), Lt(1)] = 0.0
    # Names of the linear layers that get adapters (the last part of the module path,
    # e.g. q_proj, v_proj for Llama; query, value for BERT), or "all-linear": every linear
    # layer but the output head.
    target_modules: Annotated[tuple[str, ...], MinLen(1)] = (ALL_LINEAR,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if not 0 <= self.rank <= 1024:
            raise ValueError("lora.rank must be between 0 (off) and 1024")
        if not 0 < self.alpha <= 10_000:
            raise ValueError("lora.alpha must be in (0, 10000]")
        if not 0 <= self.dropout < 1:
            raise ValueError("lora.dropout must be in [0, 1)")
        if not self.target_modules or not all(
            isinstance(m, str) and m.strip() for m in self.target_modules
        ):
            raise ValueError("lora.target_modules must name at least one module")

    @property
    def enabled(self) -> bool:
        return self.rank > 0

    def to_dict(self) -> dict:
        return {**asdict(self), "target_modules": list(self.target_modules)}

    @classmethod
    def from_value(cls, value: LoraConfig | dict | None) -> LoraConfig:
        """A ``LoraConfig`` from itself, a JSON object (unknown keys refused) or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"lora must be an object, got {value!r:.60}")
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown lora field(s): {sorted(unknown)}")
        return cls(**value)


@dataclass(frozen=True)
class RewardTrainingConfig(_Config):
    """How one reward model is trained. Defaults follow Llama 2 §3.2.2 where they apply
    (one epoch, AdamW, cosine to 10% of peak, 3% warm-up, clip 1.0); the learning rate and
    batch size are scaled for the small CPU model (Llama 2 used 1e-5 / 5e-6 at 70B, batch 512
    pairs)."""

    margin: MarginTable = field(
        default=MarginTable.SMALL,
        metadata={"help": "Margin table: none, small (1, 2/3, 1/3, 0) or large (3, 2, 1, 0)."},
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    batch_size: int = field(
        default=16, metadata={"help": "Pairs per optimizer step (per device, before accumulation)."}
    )
    grad_accum_steps: int = field(
        default=1, metadata={"help": "Micro-batches accumulated per optimizer step."}
    )
    num_epochs: float = field(
        default=1.0, metadata={"help": "Passes over the training pairs (Llama 2: one)."}
    )
    warmup_ratio: float = field(
        default=0.03, metadata={"help": "Share of steps with linear warm-up (Llama 2: 3%)."}
    )
    min_lr_ratio: float = field(
        default=0.1,
        metadata={"help": "Cosine schedule ends at this share of the peak (Llama 2: 10%)."},
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "Gradient clipping norm (Llama 2: 1.0)."}
    )
    max_length: int = field(
        default=128,
        metadata={
            "help": "Tokens per sequence; longer ones lose their START, keeping the response."
        },
    )
    eval_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of pairs (by prompt) held out for evaluation, fixed by seed."},
    )
    seed: int = field(
        default=0, metadata={"help": "Seeds the held-out split, data order and head init."}
    )
    checkpoint_every: int = field(
        default=50, metadata={"help": "Optimizer steps between resumable checkpoints (0: never)."}
    )
    group_by_length: bool = field(
        default=True, metadata={"help": "Batch pairs of similar length together to cut padding."}
    )
    pack_pairs: bool = field(
        default=True,
        metadata={
            "help": "One row per pair: the shared prompt once, then both responses (block mask)."
        },
    )
    eval_batch_size: int = field(
        default=32, metadata={"help": "Pairs per forward pass when evaluating."}
    )
    mixed_precision: str = field(
        default="auto", metadata={"help": "auto (bf16 on CUDA, fp32 on CPU), bf16 or no."}
    )
    num_threads: int = field(
        default=0,
        metadata={
            "help": "torch CPU threads (0: all cores, or 1 when the machine is already loaded)."
        },
    )
    lora: LoraConfig = field(
        default_factory=LoraConfig,
        metadata={
            "help": "LoRA adapters (rank, alpha, dropout, target_modules); rank 0: train every weight. The head always trains in full; adapters are merged when the model is written."
        },
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute activations in the backward pass: less memory, ~30% slower."},
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "margin", MarginTable(self.margin))
        object.__setattr__(self, "lora", LoraConfig.from_value(self.lora))
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError("mixed_precision must be auto, bf16 or no")
        if self.batch_size < 1 or self.grad_accum_steps < 1:
            raise ValueError("batch_size and grad_accum_steps must be at least 1")
        if not 0 < self.learning_rate < 1:
            raise ValueError("learning_rate must be in (0, 1)")
        if self.max_length < 8:
            raise ValueError("max_length must be at least 8 tokens")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError("eval_fraction must be in [0, 1)")


@dataclass(frozen=True)
class DataRecipe(_Config):
    """Which pairs train a reward model (Llama 2 §3.2.2: mix helpfulness and safety data)."""

    kind: str = field(
        default="helpfulness", metadata={"help": "helpfulness or safety: the RM being trained."}
    )
    other_ratio: float | None = field(
        default=None,
        metadata={
            "help": "Pairs sampled from the other category, as a share of this one's. Default: 1.0 for helpfulness (an equal amount of safety data), 0.1 for safety (10% helpfulness)."
        },
    )
    drop_preferred_unsafe: bool = field(
        default=True,
        metadata={
            "help": "Leave out of safety-RM training the pairs whose preferred response was tagged unsafe while the other was safe."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seeds the sampling of the other category."})

    def __post_init__(self) -> None:
        if self.kind not in ("helpfulness", "safety"):
            raise ValueError(f"recipe kind must be helpfulness or safety, got {self.kind!r}")
        if self.other_ratio is not None and self.other_ratio < 0:
            raise ValueError("other_ratio must be >= 0")

    @property
    def effective_other_ratio(self) -> float:
        if self.other_ratio is not None:
            return self.other_ratio
        return 1.0 if self.kind == "helpfulness" else 0.1


@dataclass(frozen=True)
class BaseModelConfig(_Config):
    """The default base model: a small Llama (RMSNorm, SwiGLU, RoPE, GQA) sized for 2 CPU
    cores, and its bounded pretraining on local dialogue text."""

    vocab_size: int = field(default=2000, metadata={"help": "SentencePiece BPE vocabulary size."})
    hidden_size: int = field(default=128, metadata={"help": "Model width."})
    intermediate_size: int = field(
        default=344, metadata={"help": "SwiGLU inner width (~8/3 x hidden)."}
    )
    num_hidden_layers: int = field(default=2, metadata={"help": "Transformer blocks."})
    num_attention_heads: int = field(default=4, metadata={"help": "Query heads."})
    num_key_value_heads: int = field(
        default=2, metadata={"help": "Key/value heads (< query heads: grouped-query attention)."}
    )
    max_position_embeddings: int = field(
        default=1024, metadata={"help": "Longest sequence RoPE is set up for."}
    )
    seq_length: int = field(
        default=128, metadata={"help": "Tokens per pretraining sequence (packed text)."}
    )
    batch_size: int = field(default=16, metadata={"help": "Sequences per pretraining step."})
    max_steps: int = field(default=3000, metadata={"help": "Bound on pretraining optimizer steps."})
    max_seconds: float = field(
        default=300,
        metadata={
            "help": "Time bound on base-model creation: the step count shrinks to fit it (0: steps only)."
        },
    )
    learning_rate: float = field(
        default=2e-3, metadata={"help": "Peak AdamW learning rate (cosine, 3% warm-up)."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds init and data order."})
    num_threads: int = field(
        default=0,
        metadata={
            "help": "torch CPU threads (0: all cores, or 1 when the machine is already loaded)."
        },
    )
