"""An iteration's settings: one frozen dataclass, stored as nested JSON on the Iteration.

    {"max_prompts": 64,
     "sampling": {"max_new_tokens": 48, "overlong_prompts": "truncate_left"},
     "rejection_sampling": {"num_samples": 4, "epochs": 1, ...},   # RejectionSamplingConfig
     "ppo": {"steps": 4, "kl_coef": 0.01, ...},                     # PPOConfig
     "next_batch_temperatures": [0.7, 1.0], ...}

The method sections are the Django-free configs themselves (``RejectionSamplingConfig``,
``PPOConfig``, ``SFTConfig``, ``DPOConfig`` (also ``online_dpo``), ``RRHFConfig``,
``PROConfig``, ``GRPOConfig`` (also ``rloo``)), so each knob has one home and every field of them can be set; only their
defaults change here, to a demo-sized run on the default small model on CPU (minutes). The
paper's values stay in those classes. ``max_new_tokens`` and ``seed`` are shared by every
stage: they are set once (``sampling.max_new_tokens``, ``seed``) and copied into each method
section, never set there.

``IterationSettings.from_json`` is the one way in (API, launch form, command, stages): it
checks every field's type and range with pydantic and raises ``IterationSettingsError``
naming each bad field by its dotted path (``ppo.kl_coef``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, get_args, get_type_hints
from urllib.parse import urlsplit

import annotated_types as at
import pydantic
from pydantic import AfterValidator
from pydantic_core import ErrorDetails

from annotation.domain import text_problem_in
from rlhf.ml.dpo.config import DPOConfig
from rlhf.ml.grpo.config import GRPOConfig
from rlhf.ml.ppo.config import PPOConfig
from rlhf.ml.prompt_fit import OverlongPolicy
from rlhf.ml.ranking.config import PROConfig, RRHFConfig
from rlhf.ml.rejection_sampling.config import RejectionSamplingConfig
from rlhf.ml.sft.config import SFTConfig

# Set once for every stage; the method sections take them from here.
SHARED_SAMPLING_FIELDS = ("max_new_tokens", "seed")
METHOD_SECTIONS = (
    "rejection_sampling",
    "ppo",
    "sft",
    "dpo",
    "online_dpo",
    "rrhf",
    "pro",
    "grpo",
    "rloo",
)

# The flat names of earlier releases (their stored iterations are rewritten by migration
# rlhf 0004); named in the error a script that still sends them gets.
RENAMED = {
    "next_batch_server_url": "sampling.server_url",
    "rs_num_samples": "rejection_sampling.num_samples",
    "rs_temperature": "rejection_sampling.temperature",
    "rs_epochs": "rejection_sampling.epochs",
    "rs_learning_rate": "rejection_sampling.learning_rate",
    "ppo_steps": "ppo.steps",
    "ppo_rollout_batch_size": "ppo.rollout_batch_size",
    "ppo_mini_batch_size": "ppo.mini_batch_size",
    "ppo_learning_rate": "ppo.learning_rate",
    "ppo_kl_coef": "ppo.kl_coef",
    "ppo_adaptive_kl": "ppo.adaptive_kl",
    "ppo_target_kl": "ppo.target_kl",
    "max_new_tokens": "sampling.max_new_tokens",
}


class IterationSettingsError(ValueError):
    """Settings that do not validate; ``errors`` maps each field's dotted path to why."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {why}" for path, why in errors.items()))


def _http_url(value: str) -> str:
    if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise ValueError("must be an http:// or https:// URL (or empty)")
    return value


_Temperature = Annotated[float, at.Ge(0), at.Le(10)]
_Path = Annotated[str, at.MaxLen(500)]


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling shared by every stage that samples (RS, PPO, evaluation, next batch)."""

    max_new_tokens: Annotated[int, at.Ge(1), at.Le(32_768)] = 48
    # A prompt that, plus max_new_tokens, exceeds the model's context: keep its end
    # ("truncate_left", as reward training does) or leave it out ("skip").
    overlong_prompts: OverlongPolicy = "truncate_left"
    # An OpenAI-compatible server (vLLM) that serves each policy a stage samples under its
    # registry name (RLHF-V1, base-v1); empty: sample in the worker with transformers. It
    # serves rejection sampling, evaluation, the next batch and live annotation; PPO samples
    # in the worker, since it needs the log-probabilities of the policy it is training.
    server_url: Annotated[_Path, AfterValidator(_http_url)] = ""


@dataclass(frozen=True)
class EvaluationSettings:
    """Who judges the new policy, against what, and the over-optimisation monitor."""

    # A reward model an admin marked judge, by name; "": the newest judge that shares no
    # training data with the proxy reward models (none marked: the proxies alone judge).
    judge: Annotated[str, at.MaxLen(200)] = ""
    # Also compare with this version: "first" (the policy the first iteration started
    # from), a version's name (RLHF-V2, base-v1), or "" (the parent only).
    versus: Annotated[str, at.MaxLen(200)] = "first"
    # Accept only if the judge, too, gives the new policy accept_min_win_rate.
    require_judge: bool = False
    # Monitor: every probe_every training steps (0: off), the proxies' and the judge's mean
    # reward on the first probe_prompts held-out prompts, against the KL.
    probe_prompts: Annotated[int, at.Ge(1), at.Le(10_000)] = 8
    probe_every: Annotated[int, at.Ge(0), at.Le(100_000)] = 2


@dataclass(frozen=True)
class IterationSettings:
    # --- prompts ---
    # prompts taken from the frozen batches for RS / PPO
    max_prompts: Annotated[int, at.Ge(2), at.Le(10_000_000)] = 64
    # share of those prompts held out for evaluation (by content hash)
    eval_fraction: Annotated[float, at.Gt(0), at.Lt(1)] = 0.2
    # --- sampling shared by all stages ---
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    # --- policy methods ---
    rejection_sampling: RejectionSamplingConfig = field(
        default_factory=lambda: RejectionSamplingConfig(num_samples=4, epochs=1)
    )
    ppo: PPOConfig = field(
        default_factory=lambda: PPOConfig(steps=4, rollout_batch_size=16, mini_batch_size=8)
    )
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(epochs=2))
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig(epochs=2))
    # a reference model for DPO other than the starting policy (same tokenizer); "": the start
    dpo_reference_path: _Path = ""
    online_dpo: DPOConfig = field(default_factory=lambda: DPOConfig(num_samples=4, epochs=2))
    rrhf: RRHFConfig = field(default_factory=lambda: RRHFConfig(num_samples=4))
    pro: PROConfig = field(default_factory=lambda: PROConfig(num_samples=4))
    grpo: GRPOConfig = field(
        default_factory=lambda: GRPOConfig(steps=4, prompts_per_step=8, group_size=4)
    )
    # RLOO: the GRPO trainer with the leave-one-out baseline and unscaled rewards
    rloo: GRPOConfig = field(
        default_factory=lambda: GRPOConfig(
            steps=4,
            prompts_per_step=8,
            group_size=4,
            baseline="leave_one_out",
            scale_rewards="none",
        )
    )
    # A method's learning rate left at the paper's value (set for 7-70B models) is scaled to
    # the policy's size (rlhf.ml.scale); false: use it as it is.
    scale_learning_rates: bool = True
    # --- evaluation and acceptance ---
    # the new policy must win at least this share
    accept_min_win_rate: Annotated[float, at.Ge(0), at.Le(1)] = 0.5
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    # --- next batch ---
    next_batch_prompts: Annotated[int, at.Ge(1), at.Le(1_000_000)] = 32
    # two samples, one per temperature
    next_batch_temperatures: tuple[_Temperature, _Temperature] = (0.7, 1.0)
    # second response from the previous policy instead
    next_batch_versus_previous: bool = False
    # --- reward models: used as given when set; trained from the batches otherwise ---
    reward_helpfulness_path: _Path = ""
    reward_safety_path: _Path = ""
    # modeling RewardTrainingConfig overrides
    reward_training: dict[str, Any] = field(default_factory=dict)
    seed: Annotated[int, at.Ge(0), at.Le(2**32 - 1)] = 0

    # Read by pydantic only: exact JSON types (no "5" for 5), no unknown keys, no NaN.
    __pydantic_config__ = pydantic.ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    def __post_init__(self) -> None:
        shared = {"max_new_tokens": self.sampling.max_new_tokens, "seed": self.seed}
        for section in METHOD_SECTIONS:
            object.__setattr__(self, section, replace(getattr(self, section), **shared))

    @classmethod
    def from_json(cls, data: Any) -> IterationSettings:
        """Validate stored or submitted settings; missing fields take the defaults."""
        if not isinstance(data, dict):
            raise IterationSettingsError({"settings": "must be a JSON object"})
        if (found := text_problem_in(data)) is not None:  # what no database stores
            where, problem = found
            raise IterationSettingsError({where or "settings": f"The text {problem}."})
        errors = {
            f"{section}.{name}": (
                f"shared by every stage; set "
                f"{'sampling.max_new_tokens' if name == 'max_new_tokens' else 'seed'} instead"
            )
            for section in METHOD_SECTIONS
            if isinstance(data.get(section), dict)
            for name in SHARED_SAMPLING_FIELDS
            if name in data[section]
        }
        # A section given in part keeps this class's defaults for the rest, not the paper's.
        merged = {
            key: {**_DEFAULT_JSON[key], **value}
            if key in _SECTIONS and isinstance(value, dict)
            else value
            for key, value in data.items()
        }
        try:
            text = json.dumps(merged)
        except (TypeError, ValueError) as exc:
            raise IterationSettingsError({"settings": f"must be plain JSON ({exc})"}) from None
        try:
            settings = _ADAPTER.validate_json(text)
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                path = ".".join(str(part) for part in error["loc"]) or "settings"
                if path in RENAMED:
                    errors.setdefault(path, f"renamed to {RENAMED[path]}")
                errors.setdefault(path, _message(error))
            raise IterationSettingsError(errors) from None
        if errors:
            raise IterationSettingsError(errors)
        return settings

    def as_json(self) -> dict:
        out = _ADAPTER.dump_python(self, mode="json")
        for section in METHOD_SECTIONS:
            for name in SHARED_SAMPLING_FIELDS:
                out[section].pop(name)
        return out


_ADAPTER = pydantic.TypeAdapter(IterationSettings)
_SECTIONS = ("sampling", "evaluation", *METHOD_SECTIONS)
_DEFAULT_JSON = IterationSettings().as_json()


def _message(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return "unknown setting"
    if "input" in error and error["type"] != "missing":
        return f"{message} (got {error['input']!r:.60})"
    return message


def setting_bounds(path: str) -> dict[str, Any]:
    """``min_value``/``max_value`` of a numeric setting (dotted path), for form fields."""
    cls: type = IterationSettings
    *sections, name = path.split(".")
    for section in sections:
        cls = get_type_hints(cls)[section]
    out: dict[str, Any] = {}
    for meta in get_args(get_type_hints(cls, include_extras=True)[name])[1:]:
        if isinstance(meta, at.Ge):
            out["min_value"] = meta.ge
        elif isinstance(meta, at.Le):
            out["max_value"] = meta.le
    return out


def settings_from_pairs(pairs: list[tuple[str, Any]], base: dict | None = None) -> dict:
    """Nested settings JSON from ``(dotted path, value)`` pairs over ``base`` (the commands'
    ``--set``, the launch form): ``[("ppo.steps", 8)]`` → ``{"ppo": {"steps": 8}}``."""
    out: dict = {k: dict(v) if isinstance(v, dict) else v for k, v in (base or {}).items()}
    for path, value in pairs:
        *sections, name = path.strip().split(".")
        node = out
        for section in sections:
            if not isinstance(node.get(section), dict):
                node[section] = {}
            node = node[section]
        if isinstance(value, dict) and isinstance(node.get(name), dict):
            value = {**node[name], **value}  # ppo={"steps": 8} keeps the other ppo keys
        node[name] = value
    return out
