"""RRHF's and PRO's settings: two sections of an iteration's settings ("rrhf", "pro") over
one shared base. Defaults follow the papers where they state them.

Each field's bounds are ``annotated_types`` metadata: the iteration settings validate
them (with the field's dotted path in the message) before a stage ever runs; the configs
that are not validated by pydantic are checked again in ``__post_init__``.

- RRHF: Yuan et al. 2023, "RRHF: Rank Responses to Align Language Models with Human
  Feedback without tears". Their training script fine-tunes for 3 epochs at a learning
  rate of 2e-5 with no weight decay (the Alpaca recipe, with a cosine schedule this
  trainer does not have) and weighs the ranking and fine-tuning terms equally
  (``--rrhf_weight 1``; eq. 4 has no weight): λ = 1 here.
- PRO: Song et al. 2024, "Preference Ranking Optimization for Human Alignment" (AAAI).
  β = 0.05 and a learning rate of 5e-6 are our reading of the paper's HH-RLHF setup, not
  checked against its scripts. Their code scales the SFT term by (n − 1)² and applies it
  to the summed NLL of y^1, and always uses the reward-gap temperature; here β multiplies
  the token-averaged NLL (``rlhf.ml.ranking.losses``) and the temperature is an option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from annotated_types import Ge, Gt, Le

from modeling.ml.training.config import LoraConfig

RankingLoss = Literal["rrhf", "pro"]


@dataclass(frozen=True)
class RankingConfig:
    """What RRHF and PRO share. Use ``RRHFConfig`` or ``PROConfig``: the config says which
    loss the ``RankingTrainer`` minimises."""

    loss: ClassVar[RankingLoss]

    # --- sampling (the stage samples with rlhf.ml.ranked.sample_ranked) ---
    # K responses per prompt, ranked by the combined reward; at least 2 to rank anything
    num_samples: Annotated[int, Ge(2), Le(64)] = 4
    temperature: Annotated[float, Ge(0), Le(10)] = 1.0
    top_p: Annotated[float, Gt(0), Le(1)] = 1.0
    max_new_tokens: Annotated[int, Ge(1)] = 128
    seed: Annotated[int, Ge(0)] = 0
    # --- optimisation ---
    # passes over the ranked samples
    epochs: Annotated[int, Ge(1), Le(1000)] = 1
    # prompts per optimizer step; each brings its K responses into one forward pass
    batch_size: Annotated[int, Ge(1), Le(65_536)] = 4
    learning_rate: Annotated[float, Gt(0), Le(1)] = 2e-5
    weight_decay: Annotated[float, Ge(0)] = 0.0
    max_grad_norm: Annotated[float, Gt(0)] = 1.0
    # prompt + response tokens per row; prompts are cut on the left to fit
    max_length: Annotated[int, Ge(2), Le(1_048_576)] = 1024
    # weight of the fine-tuning (NLL) term on the best response (RRHF's λ, PRO's β)
    sft_weight: Annotated[float, Ge(0)] = 1.0
    # --- resume ---
    checkpoint_every: Annotated[int, Ge(0)] = (
        5  # optimizer steps between resumable states (0: never)
    )
    # --- memory (CUDA) ---
    # LoRA adapters instead of full fine-tuning (rank 0: off); merged into the weights
    # when the policy is written.
    lora: LoraConfig = field(default_factory=LoraConfig)
    # recompute activations in the backward pass: less memory, about a third more compute
    gradient_checkpointing: bool = False
    # on CUDA, weights and compute in bfloat16 (CPU is always float32)
    bf16: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora", LoraConfig.from_value(self.lora))
        section = type(self).__name__
        if self.num_samples < 2:
            raise ValueError(
                f"{section}.num_samples must be at least 2: one response per prompt has "
                f"nothing to be ranked against (got {self.num_samples})."
            )
        for name in ("epochs", "batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{section}.{name} must be at least 1 (got {getattr(self, name)})."
                )
        if self.max_length < 2:
            raise ValueError(f"{section}.max_length must be at least 2 (got {self.max_length}).")
        if not self.learning_rate > 0 or not self.max_grad_norm > 0:
            raise ValueError(f"{section}.learning_rate and max_grad_norm must be greater than 0.")
        if self.sft_weight < 0 or self.weight_decay < 0 or self.checkpoint_every < 0:
            raise ValueError(
                f"{section}.sft_weight, weight_decay and checkpoint_every must be 0 or more."
            )


@dataclass(frozen=True)
class RRHFConfig(RankingConfig):
    """RRHF (Yuan et al. 2023): hinge loss between every two responses on their
    length-normalised log-probabilities, plus λ·NLL of the best (``sft_weight``, λ = 1)."""

    loss: ClassVar[RankingLoss] = "rrhf"


@dataclass(frozen=True)
class PROConfig(RankingConfig):
    """PRO (Song et al. 2024): the listwise softmax loss over successive suffixes of the
    ranking, plus β·NLL of the best (``sft_weight``, β = 0.05)."""

    loss: ClassVar[RankingLoss] = "pro"

    learning_rate: Annotated[float, Gt(0), Le(1)] = 5e-6
    sft_weight: Annotated[float, Ge(0)] = 0.05
    # scale each suffix's softmax by the reward gaps (the paper's dynamic temperature,
    # 1/T = r(y^k) − r(y^i)) instead of temperature 1
    reward_temperature: bool = False
