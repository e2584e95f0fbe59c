"""An iteration's settings: one frozen dataclass, stored as JSON on the Iteration.

Defaults are a demo-sized run on the default small model on CPU (minutes); the paper's
values live in ``PPOConfig`` and ``RejectionSamplingConfig``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class IterationSettings:
    # --- prompts ---
    max_prompts: int = 64  # prompts taken from the frozen batches for RS / PPO
    eval_fraction: float = 0.2  # share of those prompts held out for evaluation (by content hash)
    # --- rejection sampling ---
    rs_num_samples: int = 4  # K
    rs_temperature: float = 1.0
    rs_epochs: int = 1
    rs_learning_rate: float = 2e-5
    # --- PPO ---
    ppo_steps: int = 4
    ppo_rollout_batch_size: int = 16
    ppo_mini_batch_size: int = 8
    ppo_learning_rate: float = 1e-6
    ppo_kl_coef: float = 0.01
    ppo_adaptive_kl: bool = False
    ppo_target_kl: float = 6.0
    # --- sampling shared by all stages ---
    max_new_tokens: int = 48
    # --- evaluation and acceptance ---
    accept_min_win_rate: float = 0.5  # the new policy must win at least this share
    # --- next batch ---
    next_batch_prompts: int = 32
    next_batch_temperatures: tuple[float, float] = (0.7, 1.0)  # two samples, one per temperature
    next_batch_versus_previous: bool = False  # second response from the previous policy instead
    # An OpenAI-compatible server (vLLM, TGI) already serving RLHF-V{N} under that name;
    # empty: sample the next batch in the worker with transformers.
    next_batch_server_url: str = ""
    # --- reward models: used as given when set; trained from the batches otherwise ---
    reward_helpfulness_path: str = ""
    reward_safety_path: str = ""
    reward_training: dict = field(default_factory=dict)  # modeling RewardTrainingConfig overrides
    seed: int = 0

    @classmethod
    def from_json(cls, data: dict) -> IterationSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown iteration settings: {sorted(unknown)}")
        values = dict(data)
        if "next_batch_temperatures" in values:
            values["next_batch_temperatures"] = tuple(values["next_batch_temperatures"])
        return cls(**values)

    def as_json(self) -> dict:
        out = asdict(self)
        out["next_batch_temperatures"] = list(self.next_batch_temperatures)
        return out
