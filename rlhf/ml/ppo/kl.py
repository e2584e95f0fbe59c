"""KL control: the β that weighs the per-token KL penalty in the reward."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlhf.ml.ppo.config import PPOConfig


class FixedKLController:
    """A constant β (Llama 2 uses 0.01 for 7B/13B, 0.005 for 34B/70B)."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_samples: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. 2019, §2.2: β_{t+1} = β_t (1 + K_β e_t), e_t = clip(KL_t/KL_target − 1, ±0.2),
    K_β = n / horizon. Raises β while the policy drifts past the budget, lowers it below."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_samples: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon


def kl_controller(config: PPOConfig) -> FixedKLController | AdaptiveKLController:
    if config.adaptive_kl:
        return AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
    return FixedKLController(config.kl_coef)
