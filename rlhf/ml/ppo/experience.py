"""Experience making: sample responses, score them, and turn the scores into per-token
rewards, advantages and returns (Llama 2 §3.2.3, eq. for R(g|p)):

    R(g|p) = R̃_c(g|p) − β·D_KL(π_θ(g|p) ‖ π_0(g|p))

with the KL penalty spread over tokens (−β·kl_t at each token) and the whitened score
R̃_c added at the last token."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from modeling.ml.chat import chat_for
from rlhf.ml.generation.base import SamplingParams
from rlhf.ml.generation.local import decode_responses, sample_tokens
from rlhf.ml.ppo.losses import approx_kl, gae, masked_mean, masked_whiten
from rlhf.ml.ppo.model import gather_logprobs, reference_logprobs
from rlhf.ml.prompts import PromptExample, RewardFn
from rlhf.ml.rewards import squash_then_logit, whiten

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rlhf.ml.ppo.config import PPOConfig
    from rlhf.ml.ppo.model import PolicyWithValueHead


class NonFiniteError(FloatingPointError):
    """A loss, score or log-probability became NaN or infinite."""


@dataclass
class Experience:
    """One rollout batch, on the policy's device. Shapes: (B, P+T) and (B, T)."""

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    action_mask: torch.Tensor
    prompt_width: int
    old_logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    scores: list[float]  # combined RM score per response, before shaping
    kl: list[float]  # summed per-token KL per response
    responses: list[str]
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.sequences.shape[0]


def shape_scores(
    scores: Sequence[float], *, logit_of_squashed: bool, whiten_scores: bool
) -> list[float]:
    shaped = [squash_then_logit(s) for s in scores] if logit_of_squashed else list(scores)
    return whiten(shaped) if whiten_scores else shaped


@torch.no_grad()
def make_experience(
    policy: PolicyWithValueHead,
    ref_lm: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[PromptExample],
    reward: RewardFn,
    config: PPOConfig,
    kl_coef: float,
) -> Experience:
    """Sample one response per prompt from ``policy`` and build everything PPO trains on."""
    timings = {}
    t0 = time.perf_counter()
    policy.eval()
    params = SamplingParams(
        temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens
    )
    fmt = chat_for(tokenizer)
    sampled = sample_tokens(policy.lm, tokenizer, [fmt.prompt(p.turns) for p in prompts], params)
    responses = decode_responses(tokenizer, sampled)
    timings["generation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scores = [
        float(s)
        for s in reward(
            [list(p.turns) for p in prompts], responses, [p.safety_tagged for p in prompts]
        )
    ]
    if not all(math.isfinite(s) for s in scores):
        raise NonFiniteError("The reward model returned a NaN or infinite score.")
    shaped = shape_scores(
        scores, logit_of_squashed=config.logit_of_squashed_score, whiten_scores=config.whiten_scores
    )
    timings["reward"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    seq, attn, width = sampled.sequences, sampled.attention_mask, sampled.prompt_width
    mask = sampled.response_mask.float()
    logits, values = policy(seq, attn, width)
    old_logprobs = gather_logprobs(logits, seq[:, width:])
    ref_logprobs = reference_logprobs(ref_lm, seq, attn, width)
    timings["forward"] = time.perf_counter() - t0

    kl = approx_kl(old_logprobs, ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(prompts)), last] += torch.tensor(
        shaped, dtype=rewards.dtype, device=rewards.device
    )
    advantages, returns = gae(rewards, values, mask, config.gamma, config.gae_lambda)
    advantages = masked_whiten(advantages, mask)
    if not torch.isfinite(old_logprobs * mask).all() or not torch.isfinite(advantages).all():
        raise NonFiniteError("Log-probabilities or advantages became NaN during experience making.")
    return Experience(
        sequences=seq,
        attention_mask=attn,
        action_mask=mask,
        prompt_width=width,
        old_logprobs=old_logprobs,
        values=values,
        advantages=advantages,
        returns=returns,
        scores=scores,
        kl=kl.sum(dim=1).tolist(),
        responses=responses,
        timings=timings,
    )


def experience_stats(exp: Experience) -> dict[str, float]:
    n = len(exp)
    return {
        "reward": sum(exp.scores) / n,
        "kl": sum(exp.kl) / n,
        "response_length": float(exp.action_mask.sum(dim=1).mean()),
        "value_mean": float(masked_mean(exp.values, exp.action_mask)),
    }
