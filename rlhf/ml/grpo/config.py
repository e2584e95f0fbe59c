"""GRPO's (and RLOO's) settings. Defaults follow DeepSeekMath (Shao et al. 2024, §4.2:
learning rate 1e-6, β = 0.04, one policy update per exploration stage), with the token-level
loss normalisation of DAPO (Yu et al. 2025) / Dr. GRPO (Liu et al. 2025) so long responses
are not favoured or penalised by their length.

RLOO (Ahmadian et al. 2024) is the same trainer with the leave-one-out baseline and no
std scaling: ``rloo_config()``.

Each field's bounds are ``annotated_types`` metadata: the iteration settings validate them
(with the field's dotted path in the message) before a stage ever runs; ``__post_init__``
checks them again for configs made in code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt

from modeling.ml.training.config import LoraConfig


@dataclass(frozen=True)
class GRPOConfig:
    # --- schedule ---
    # steps: sample G responses for each of prompts_per_step prompts, then update on them
    steps: Annotated[int, Ge(1), Le(1_000_000)] = 100
    prompts_per_step: Annotated[int, Ge(1), Le(100_000)] = 8
    # G: samples per prompt, the group each response is compared against (DeepSeekMath: 64)
    group_size: Annotated[int, Ge(2), Le(1024)] = 4
    # μ: passes over each step's samples (DeepSeekMath: 1, so the ratio starts at 1)
    updates_per_step: Annotated[int, Ge(1), Le(100)] = 1
    # responses per optimizer step; a step makes ceil(prompts_per_step·G / this) of them per pass
    mini_batch_size: Annotated[int, Ge(1), Le(1_000_000)] = 32
    # --- advantages ---
    # group: r − mean of the group (GRPO); leave_one_out: r − mean of the others (RLOO)
    baseline: Literal["group", "leave_one_out"] = "group"
    # std: divide by the group's std (GRPO); none: leave unscaled (Dr. GRPO, RLOO)
    scale_rewards: Literal["std", "none"] = "std"
    # --- objective ---
    # β of the per-token k3 KL to the reference in the loss (DeepSeekMath: 0.04; 0: none)
    kl_coef: Annotated[float, Ge(0), Le(100)] = 0.04
    # ε: the ratio π/π_old is clipped to [1−ε, 1+ε] (PPO and GRPO: 0.2)
    clip_range: Annotated[float, Gt(0), Lt(1)] = 0.2
    # DAPO's decoupled upper bound 1+ε_high ("clip-higher", 0.28); None: ε
    clip_range_high: Annotated[float, Gt(0), Le(10)] | None = None
    # token: Σ token losses / tokens in the batch (DAPO); sequence: mean per response, then
    # over responses (GRPO eq. 3; favours short correct answers); constant: / (B·max_new_tokens)
    # (Dr. GRPO)
    loss_normalisation: Literal["token", "sequence", "constant"] = "token"
    # --- optimisation ---
    learning_rate: Annotated[float, Gt(0), Le(1)] = 1e-6  # DeepSeekMath
    weight_decay: Annotated[float, Ge(0)] = 0.0
    max_grad_norm: Annotated[float, Gt(0)] = 1.0
    seed: Annotated[int, Ge(0)] = 0
    # --- sampling ---
    temperature: Annotated[float, Gt(0), Le(10)] = (
        1.0  # > 0: a group of greedy copies has no spread
    )
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
        if self.group_size < 2:
            raise ValueError(
                f"group_size (G samples per prompt) must be at least 2 for a group baseline "
                f"(got {self.group_size})."
            )
        if self.steps < 1 or self.prompts_per_step < 1:
            raise ValueError("steps and prompts_per_step must be >= 1")
        if self.updates_per_step < 1 or self.mini_batch_size < 1:
            raise ValueError("updates_per_step and mini_batch_size must be >= 1")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef (β) must be 0 or more (got {self.kl_coef}).")
        if not 0 < self.clip_range < 1:
            raise ValueError(f"clip_range must be in (0, 1) (got {self.clip_range}).")
        if self.clip_range_high is not None and self.clip_range_high <= 0:
            raise ValueError(f"clip_range_high must be > 0 (got {self.clip_range_high}).")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0: greedy samples of one prompt are all the same "
                f"and have no advantage (got {self.temperature})."
            )
        if self.baseline not in ("group", "leave_one_out"):
            raise ValueError(
                f"baseline must be 'group' or 'leave_one_out' (got {self.baseline!r})."
            )
        if self.scale_rewards not in ("std", "none"):
            raise ValueError(f"scale_rewards must be 'std' or 'none' (got {self.scale_rewards!r}).")
        if self.loss_normalisation not in ("token", "sequence", "constant"):
            raise ValueError(
                "loss_normalisation must be 'token', 'sequence' or 'constant' "
                f"(got {self.loss_normalisation!r})."
            )

    @property
    def method(self) -> str:
        """ "rloo" for the leave-one-out baseline, "grpo" otherwise."""
        return "rloo" if self.baseline == "leave_one_out" else "grpo"


def rloo_config(**overrides: Any) -> GRPOConfig:
    """RLOO (Ahmadian et al. 2024): the leave-one-out baseline, unscaled; other settings
    as GRPO's unless overridden."""
    return GRPOConfig(**{"baseline": "leave_one_out", "scale_rewards": "none", **overrides})
