"""Rejection sampling settings; defaults follow Llama 2 where it states them.

Each field's bounds are ``annotated_types`` metadata: the iteration settings validate
them (with the field's dotted path in the message) before a stage ever runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from annotated_types import Ge, Gt, Le

from modeling.ml.training.config import LoraConfig


@dataclass(frozen=True)
class RejectionSamplingConfig:
    # --- sampling ---
    # K samples per prompt; Llama 2's Fig. 7 goes to K=100
    num_samples: Annotated[int, Ge(1), Le(1024)] = 8
    # Llama 2 Fig. 8: the best temperature drifts up (1.2–1.3) with RLHF; 0 is greedy
    temperature: Annotated[float, Ge(0), Le(10)] = 1.0
    top_p: Annotated[float, Gt(0), Le(1)] = 1.0
    max_new_tokens: Annotated[int, Ge(1)] = 128
    seed: Annotated[int, Ge(0)] = 0
    # --- fine-tuning on the best samples (Llama 2 SFT recipe, §3.1) ---
    learning_rate: Annotated[float, Gt(0), Le(1)] = 2e-5
    weight_decay: Annotated[float, Ge(0)] = 0.1
    epochs: Annotated[int, Ge(1), Le(1000)] = 2
    batch_size: Annotated[int, Ge(1), Le(65_536)] = 8  # Llama 2 uses 64 on GPUs
    max_grad_norm: Annotated[float, Gt(0)] = 1.0
    # --- memory (CUDA) ---
    # LoRA adapters for the fine-tuning instead of training every weight (rank 0: off);
    # merged into the weights when the policy is written.
    lora: LoraConfig = field(default_factory=LoraConfig)
    # recompute activations in the backward pass: less memory, about a third more compute
    gradient_checkpointing: bool = False
    # on CUDA, weights and compute in bfloat16 (CPU is always float32)
    bf16: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora", LoraConfig.from_value(self.lora))
        if self.num_samples < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("num_samples, epochs and batch_size must be >= 1")
