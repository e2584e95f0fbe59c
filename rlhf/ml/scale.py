"""Learning rates that suit the policy's size (plain Python; ``parameter_count`` reads a checkpoint).

Llama 2's RLHF learning rates (rejection-sampling fine-tuning at 2e-5 as in SFT, PPO at
1e-6) were set for 7-70B models. Applied to a model of a few million parameters they leave
it where it was: measured on the default base model, PPO at 1e-6 kept the KL at 0.000 over
16 steps, while rejection sampling at 1e-3 for 3 epochs moved it. The usual rule of thumb
(the stable Adam step size falls roughly as 1/sqrt(width), hence as N^-1/2 for models of
similar shape; compare the learning rates of the GPT-3 and Llama model families) scales the
paper's rate from 7B parameters, with a ceiling.
"""

from __future__ import annotations

import math

PAPER_PARAMS = 7e9  # the smallest model the paper's RLHF learning rates were set for


def scaled_learning_rate(paper_lr: float, n_params: int, *, ceiling: float) -> float:
    """``paper_lr * sqrt(7e9 / n_params)``, at most ``ceiling``, never below ``paper_lr``."""
    if n_params <= 0:
        raise ValueError("n_params must be positive")
    return max(paper_lr, min(ceiling, paper_lr * math.sqrt(PAPER_PARAMS / n_params)))


# The ceilings: the highest rates measured to stay stable on the default small model.
REJECTION_SAMPLING_CEILING = 1e-3
PPO_CEILING = 1e-4


def parameter_count(path: str) -> int:
    """Parameters of the causal LM checkpoint at ``path``, counted on the meta device
    (nothing is loaded or allocated)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())
