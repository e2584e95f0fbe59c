"""The PPO loop: make experience, then ``ppo_epochs`` passes of mini-batch updates.

trainer = PPOTrainer.from_pretrained(policy_dir, reward, PPOConfig(...))
result = trainer.train(prompts, steps=100, on_step=print)
trainer.save(out_dir)   # a plain causal-LM checkpoint (+ value_head.pt)

With ``config.lora`` the policy trains through LoRA adapters (the value head in full), the
reference π_0 is the same weights with the adapters switched off (one copy in memory), and
``save`` merges the adapters into the weights.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modeling.ml.checkpoints import partial_dir, publish
from modeling.ml.lora import AdaptersOff, gradient_checkpointing_enable, lora_merge, lora_wrap
from rlhf.ml.policy_io import causal_lm_load
from rlhf.ml.ppo.config import PPOConfig
from rlhf.ml.ppo.experience import NonFiniteError, experience_stats, make_experience
from rlhf.ml.ppo.kl import kl_controller
from rlhf.ml.ppo.losses import (
    clipped_surrogate_loss,
    clipped_value_loss,
    entropy_from_logits,
    masked_mean,
)
from rlhf.ml.ppo.model import PolicyWithValueHead, gather_logprobs
from rlhf.ml.ppo.replay_buffer import ReplayBuffer
from rlhf.ml.prompts import PromptExample, RewardFn

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class PPOStepStats:
    step: int
    reward: float  # mean combined RM score of the rollout (before whitening)
    kl: float  # mean per-response KL(π‖π_ref), in nats
    kl_coef: float  # β used for this rollout
    entropy: float  # mean per-token policy entropy during the update
    policy_loss: float
    value_loss: float
    clip_fraction: float  # share of tokens whose ratio left [1−ε, 1+ε]
    response_length: float
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # generation, reward, forward, train

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PPOResult:
    steps: list[PPOStepStats]

    @property
    def final(self) -> PPOStepStats:
        return self.steps[-1]


class PPOTrainer:
    def __init__(
        self,
        lm: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        reward: RewardFn,
        config: PPOConfig,
        *,
        ref_lm: PreTrainedModel | None = None,
    ) -> None:
        self.config, self.tokenizer, self.reward = config, tokenizer, reward
        torch.manual_seed(config.seed)
        if config.gradient_checkpointing:
            gradient_checkpointing_enable(lm)
        # The frozen reference π_0 the KL penalty anchors to: the starting policy. Under LoRA
        # it is ``lm`` itself with its adapters off; otherwise a copy taken before training.
        self.adapted = None
        self.ref_lm: Any  # a model, or ``AdaptersOff`` over the policy's own
        if config.lora.enabled:
            self.adapted = lora_wrap(lm, config.lora, task_type="CAUSAL_LM")
            self.ref_lm = AdaptersOff(lm)
        else:
            self.ref_lm = ref_lm if ref_lm is not None else copy.deepcopy(lm)
            self.ref_lm.eval().requires_grad_(False)
        self.policy = PolicyWithValueHead(lm)
        self.kl_ctl = kl_controller(config)
        self.optimizer = torch.optim.AdamW(
            [p for p in self.policy.parameters() if p.requires_grad],
            lr=config.learning_rate,
            betas=config.adam_betas,
            weight_decay=config.weight_decay,
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.steps_done = 0

    @classmethod
    def from_pretrained(
        cls, path: str | Path, reward: RewardFn, config: PPOConfig, device: str | None = None
    ) -> PPOTrainer:
        from modeling.ml.tokenizer import tokenizer_load

        lm = causal_lm_load(path, bf16=config.bf16, device=device)
        return cls(lm, tokenizer_load(path), reward, config)

    def step(self, prompts: Sequence[PromptExample]) -> PPOStepStats:
        """One PPO iteration on ``prompts`` (one rollout batch)."""
        start = time.perf_counter()
        cfg = self.config
        kl_coef = self.kl_ctl.value
        exp = make_experience(
            self.policy, self.ref_lm, self.tokenizer, prompts, self.reward, cfg, kl_coef
        )
        t0 = time.perf_counter()
        self.policy.train()
        totals = {"policy_loss": 0.0, "value_loss": 0.0, "clip_fraction": 0.0, "entropy": 0.0}
        updates = 0
        buffer = ReplayBuffer(exp)
        for _ in range(cfg.ppo_epochs):
            for mb in buffer.minibatches(cfg.mini_batch_size, self.generator):
                logits, values = self.policy(mb.sequences, mb.attention_mask, exp.prompt_width)
                logprobs = gather_logprobs(logits, mb.sequences[:, exp.prompt_width :])
                policy_loss, clip_fraction = clipped_surrogate_loss(
                    logprobs, mb.old_logprobs, mb.advantages, mb.action_mask, cfg.clip_range
                )
                value_loss = clipped_value_loss(
                    values, mb.values, mb.returns, mb.action_mask, cfg.value_clip_range
                )
                loss = policy_loss + cfg.value_loss_coef * value_loss
                if not torch.isfinite(loss):
                    raise NonFiniteError(
                        f"PPO loss became {loss.item()} at step {self.steps_done + 1}."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    entropy = masked_mean(entropy_from_logits(logits), mb.action_mask)
                totals["policy_loss"] += policy_loss.item()
                totals["value_loss"] += value_loss.item()
                totals["clip_fraction"] += clip_fraction.item()
                totals["entropy"] += entropy.item()
                updates += 1
        exp.timings["train"] = time.perf_counter() - t0
        stats = experience_stats(exp)
        self.kl_ctl.update(stats["kl"], len(exp))
        self.steps_done += 1
        return PPOStepStats(
            step=self.steps_done,
            reward=stats["reward"],
            kl=stats["kl"],
            kl_coef=kl_coef,
            response_length=stats["response_length"],
            seconds=time.perf_counter() - start,
            timings=dict(exp.timings),
            **{k: v / max(updates, 1) for k, v in totals.items()},
        )

    def train(
        self,
        prompts: Sequence[PromptExample],
        *,
        steps: int | None = None,
        on_step: Callable[[PPOStepStats], None] | None = None,
    ) -> PPOResult:
        """Run ``steps`` PPO iterations (default ``config.steps``) over the prompt set."""
        steps = self.config.steps if steps is None else steps
        if not prompts:
            raise ValueError("The prompt set is empty: PPO has nothing to sample from.")
        rng = random.Random(self.config.seed)
        order: list[PromptExample] = []
        history = []
        for _ in range(steps):
            batch: list[PromptExample] = []
            while len(batch) < self.config.rollout_batch_size:  # cycles through the prompt set
                if not order:
                    order = list(prompts)
                    rng.shuffle(order)
                batch.append(order.pop())
            stats = self.step(batch)
            if not math.isfinite(stats.reward):
                raise NonFiniteError("The mean reward is not finite.")
            history.append(stats)
            if on_step is not None:
                on_step(stats)
        return PPOResult(history)

    def save(self, out_dir: str | Path) -> Path:
        """Write the policy as a causal-LM checkpoint, atomically: a reader sees either no
        folder or a complete one. LoRA adapters are merged into the weights first (training
        cannot go on after that)."""
        if self.adapted is not None:
            self.policy.lm = lora_merge(self.adapted)
            self.adapted = None
        tmp = partial_dir(out_dir)
        self.policy.lm.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        torch.save(self.policy.value_head.state_dict(), tmp / "value_head.pt")
        return publish(tmp, out_dir)
