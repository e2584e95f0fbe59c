"""Rejection sampling settings; defaults follow Llama 2 where it states them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RejectionSamplingConfig:
    # --- sampling ---
    num_samples: int = 8  # K samples per prompt; Llama 2's Fig. 7 goes to K=100
    temperature: float = 1.0  # Llama 2 Fig. 8: the best temperature drifts up (1.2–1.3) with RLHF
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    # --- fine-tuning on the best samples (Llama 2 SFT recipe, §3.1) ---
    learning_rate: float = 2e-5
    weight_decay: float = 0.1
    epochs: int = 2
    batch_size: int = 8  # Llama 2 uses 64 on GPUs
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("num_samples, epochs and batch_size must be >= 1")
