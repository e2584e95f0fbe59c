"""SFT's settings; defaults follow Llama 2's supervised fine-tuning (§3.1): AdamW, a cosine
learning-rate schedule from 2e-5, weight decay 0.1, 2 epochs (batch size 64 and sequence
length 4096 on their GPUs; 8 and the model's context here).

Each field's bounds are ``annotated_types`` metadata: the iteration settings validate them
(with the field's dotted path in the message) before a stage ever runs; ``__post_init__``
checks them again for configs made in code. torch-free: the web app's settings import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le, Lt

from modeling.ml.training.config import LoraConfig

Schedule = Literal["cosine", "constant"]
SCHEDULES: tuple[str, ...] = ("cosine", "constant")


@dataclass(frozen=True)
class SFTConfig:
    # --- schedule ---
    # passes over the demonstrations (Llama 2: 2)
    epochs: Annotated[int, Ge(1), Le(1000)] = 2
    # demonstrations per optimizer step (Llama 2: 64)
    batch_size: Annotated[int, Ge(1), Le(65_536)] = 8
    # peak learning rate (Llama 2: 2e-5)
    learning_rate: Annotated[float, Gt(0), Le(1)] = 2e-5
    # cosine: from the peak to 0 over the run (Llama 2); constant: the peak throughout
    lr_schedule: Schedule = "cosine"
    # share of the steps that warm the learning rate up linearly from 0 (Llama 2: none stated)
    warmup_ratio: Annotated[float, Ge(0), Lt(1)] = 0.0
    # --- optimisation ---
    weight_decay: Annotated[float, Ge(0)] = 0.1  # Llama 2
    max_grad_norm: Annotated[float, Gt(0)] = 1.0
    # prompt + response, in tokens; the prompt loses its start first (0: the model's context)
    max_length: Annotated[int, Ge(0), Le(1_000_000)] = 0
    seed: Annotated[int, Ge(0)] = 0
    # --- sampling (SFT samples nothing; the iteration copies the shared value in) ---
    max_new_tokens: Annotated[int, Ge(1)] = 128
    # --- memory ---
    # LoRA adapters (rank 0: full fine-tuning), merged into the weights when saved
    lora: LoraConfig = field(default_factory=LoraConfig)
    # recompute activations in the backward pass: less memory, about a third more compute
    gradient_checkpointing: bool = False
    bf16: bool = True  # on CUDA; CPU is always float32
    # optimizer steps between resumable states (0: never)
    checkpoint_every: Annotated[int, Ge(0)] = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora", LoraConfig.from_value(self.lora))
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be at least 1 (got {self.epochs}, {self.batch_size})."
            )
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1] (got {self.learning_rate}).")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(
                f"Unknown learning-rate schedule {self.lr_schedule!r}; "
                f"choose one of {', '.join(SCHEDULES)}."
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1) (got {self.warmup_ratio}).")
        if self.max_length < 0 or self.max_length == 1 or self.checkpoint_every < 0:
            raise ValueError(
                f"max_length must be 0 (the model's context) or at least 2 (got "
                f"{self.max_length}), checkpoint_every at least 0."
            )
