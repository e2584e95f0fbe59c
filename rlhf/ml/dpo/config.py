"""DPO's settings (offline from human pairs, and online from K ranked policy samples).

Defaults follow Rafailov et al. 2023 (β = 0.1, RMSprop at 1e-6 with 150 warm-up steps; TRL
and Zephyr use AdamW at 5e-7 with 10 % warm-up, which we take). Each field's bounds are
``annotated_types`` metadata: the iteration settings validate them (with the field's dotted
path in the message) before a stage ever runs; ``__post_init__`` checks them again for
configs made in code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Ge, Gt, Le, Lt

from modeling.ml.training.config import LoraConfig

# torch-free on purpose: the web app's settings import this module
LossType = Literal["sigmoid", "ipo", "robust"]
LOSS_TYPES: tuple[str, ...] = ("sigmoid", "ipo", "robust")


@dataclass(frozen=True)
class DPOConfig:
    # --- objective ---
    # β: strength of the KL anchor to the reference (Rafailov et al.: 0.1; IPO's τ)
    beta: Annotated[float, Gt(0), Le(100)] = 0.1
    # sigmoid: DPO (eq. 7); ipo: IPO (Azar et al. eq. 17, length-averaged as TRL);
    # robust: robust DPO (Chowdhury et al. 2024) for labels flipped with prob. label_smoothing
    loss_type: LossType = "sigmoid"
    # ε: assumed share of flipped labels (cDPO with sigmoid, robust DPO with robust)
    label_smoothing: Annotated[float, Ge(0), Lt(0.5)] = 0.0
    # weight of an NLL term on the chosen response, per token (RPO, Pang et al. 2024; 0: off)
    nll_weight: Annotated[float, Ge(0), Le(100)] = 0.0
    # subtract each pair's margin (the annotators' strength, from the reward models'
    # margin tables, in reward units) inside the loss: −log σ(β·h − m)
    use_margin: bool = False
    # --- schedule ---
    epochs: Annotated[int, Ge(1), Le(100)] = 1
    batch_size: Annotated[int, Ge(1), Le(4096)] = 8  # pairs per optimizer step
    learning_rate: Annotated[float, Gt(0), Le(1)] = 5e-7  # TRL/Zephyr; the paper: 1e-6
    warmup_ratio: Annotated[float, Ge(0), Le(1)] = 0.1  # linear warm-up, then linear decay to 0
    weight_decay: Annotated[float, Ge(0)] = 0.0
    max_grad_norm: Annotated[float, Gt(0)] = 1.0
    # prompt + the longer response, in tokens; the prompt loses its start first
    max_length: Annotated[int, Ge(2), Le(1_000_000)] = 1024
    seed: Annotated[int, Ge(0)] = 0
    # --- online DPO: K samples per prompt ranked by the combined reward, best vs worst ---
    num_samples: Annotated[int, Ge(2), Le(64)] = 4
    temperature: Annotated[float, Ge(0), Le(10)] = 1.0
    top_p: Annotated[float, Gt(0), Le(1)] = 1.0
    max_new_tokens: Annotated[int, Ge(1)] = 128  # the iteration copies the shared value in
    # --- memory ---
    # LoRA adapters (rank 0: full fine-tuning); the reference is then the adapters off
    lora: LoraConfig = field(default_factory=LoraConfig)
    gradient_checkpointing: bool = False
    bf16: bool = True  # on CUDA; CPU is always float32
    # optimizer steps between resumable states (0: never)
    checkpoint_every: Annotated[int, Ge(0)] = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora", LoraConfig.from_value(self.lora))
        if not self.beta > 0:
            raise ValueError(f"beta must be greater than 0 (got {self.beta}).")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"Unknown DPO loss type {self.loss_type!r}; choose one of {', '.join(LOSS_TYPES)}."
            )
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5) (got {self.label_smoothing}).")
        if self.num_samples < 2:
            raise ValueError(
                f"Online DPO needs at least 2 samples per prompt (num_samples {self.num_samples})."
            )
        if self.batch_size < 1 or self.epochs < 1 or self.max_length < 2:
            raise ValueError("batch_size and epochs must be >= 1, max_length >= 2")
