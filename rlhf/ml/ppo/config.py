"""PPO's settings. Defaults follow Llama 2 §3.2.3 where it states them.

Each field's bounds are ``annotated_types`` metadata: the iteration settings validate
them (with the field's dotted path in the message) before a stage ever runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from annotated_types import Ge, Gt, Le, Lt

from modeling.ml.training.config import LoraConfig

_Beta = Annotated[float, Ge(0), Lt(1)]


@dataclass(frozen=True)
class PPOConfig:
    # --- schedule ---
    # PPO iterations (sample a rollout batch, update on it) that ``PPOTrainer.train`` runs;
    # Llama 2 trains "for between 200 and 400 iterations"
    steps: Annotated[int, Ge(1), Le(1_000_000)] = 200
    # --- optimisation ---
    learning_rate: Annotated[float, Gt(0), Le(1)] = (
        1e-6  # Llama 2: constant 1e-6 with AdamW (β1 0.9, β2 0.95)
    )
    adam_betas: tuple[_Beta, _Beta] = (0.9, 0.95)
    weight_decay: Annotated[float, Ge(0)] = 0.1  # Llama 2
    max_grad_norm: Annotated[float, Gt(0)] = 1.0  # Llama 2 clips gradients at 1.0
    rollout_batch_size: Annotated[int, Ge(1), Le(1_000_000)] = (
        512  # Llama 2: prompts per PPO iteration
    )
    mini_batch_size: Annotated[int, Ge(1), Le(1_000_000)] = (
        64  # Llama 2: one gradient step per mini-batch
    )
    ppo_epochs: Annotated[int, Ge(1), Le(1000)] = 1  # passes over each rollout batch
    # --- PPO objective ---
    clip_range: Annotated[float, Gt(0)] = 0.2  # Llama 2: PPO clip threshold ε
    value_clip_range: Annotated[float, Gt(0)] = (
        0.2  # clips the value update around the rollout's values
    )
    value_loss_coef: Annotated[float, Ge(0)] = 0.1  # weight of the value loss in the joint loss
    gamma: Annotated[float, Ge(0), Le(1)] = 1.0  # discount; episodes are one response
    gae_lambda: Annotated[float, Ge(0), Le(1)] = 0.95  # GAE λ
    # --- reward shaping ---
    kl_coef: Annotated[float, Ge(0)] = 0.01  # β: Llama 2 uses 0.01 (7B, 13B) and 0.005 (34B, 70B)
    adaptive_kl: bool = False  # Ziegler et al. adaptive β towards ``target_kl``
    target_kl: Annotated[float, Gt(0)] = 6.0  # nats per response the adaptive controller aims for
    kl_horizon: Annotated[int, Ge(1)] = 10_000  # adaptive controller's horizon, in samples
    whiten_scores: bool = True  # Llama 2 whitens the combined RM score per batch
    logit_of_squashed_score: bool = True  # Llama 2 reverses the sigmoid before whitening
    # --- sampling ---
    temperature: Annotated[float, Ge(0), Le(10)] = 1.0
    top_p: Annotated[float, Gt(0), Le(1)] = 1.0
    max_new_tokens: Annotated[int, Ge(1)] = 128
    seed: Annotated[int, Ge(0)] = 0
    # --- memory (CUDA) ---
    # LoRA adapters instead of full fine-tuning (rank 0: off); merged into the weights when
    # the policy is written. PPO's reference is then the same weights with adapters off.
    lora: LoraConfig = field(default_factory=LoraConfig)
    # recompute activations in the backward pass: less memory, about a third more compute
    gradient_checkpointing: bool = False
    # on CUDA, weights and compute in bfloat16 (CPU is always float32)
    bf16: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora", LoraConfig.from_value(self.lora))
        if self.mini_batch_size < 1 or self.rollout_batch_size < 1 or self.ppo_epochs < 1:
            raise ValueError("batch sizes and ppo_epochs must be >= 1")
        if self.clip_range <= 0 or self.kl_coef < 0:
            raise ValueError("clip_range must be > 0 and kl_coef >= 0")
