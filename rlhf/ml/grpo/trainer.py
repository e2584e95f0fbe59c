"""The GRPO/RLOO loop: sample G responses per prompt, score them with the combined reward,
compare each with its group, then ``updates_per_step`` passes of mini-batch updates on the
clipped, KL-regularised loss (``rlhf.ml.grpo.losses``). No value head, no critic.

    trainer = GRPOTrainer.from_pretrained(policy_dir, GRPOConfig(...), reward=reward)
    history = trainer.train(prompts, on_step=print, state=TrainState(work / "state", every=5))
    trainer.save(out_dir)   # a plain causal-LM checkpoint (LoRA merged)

The reference π_ref of the KL term is the starting policy: with ``config.lora`` the same
weights with the adapters off (one copy in memory), otherwise a frozen copy (or the model
passed as ``reference``). Log-probabilities are those of the model's own distribution
(temperature 1) for the policy, the rollout policy and the reference alike, as in PPO here.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modeling.ml.chat import chat_for
from modeling.ml.lora import AdaptersOff, gradient_checkpointing_enable, lora_merge, lora_wrap
from rlhf.ml.generation.base import SamplingParams
from rlhf.ml.generation.local import SampledTokens, decode_responses, sample_tokens
from rlhf.ml.grpo.config import GRPOConfig
from rlhf.ml.grpo.losses import group_advantages, policy_loss
from rlhf.ml.policy_io import causal_lm_load, policy_write
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.ppo.model import gather_logprobs, position_ids_for, reference_logprobs
from rlhf.ml.prompts import PromptExample, RewardFn

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rlhf.ml.train_state import TrainState


class PromptCycle:
    """Prompt indices in a seeded shuffled order, reshuffled each time the set is used up
    (as ``PPOTrainer.train`` cycles), with a state a resumed run continues from."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rng = random.Random(seed)
        self.order: list[int] = []

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < k:
            if not self.order:
                self.order = list(range(self.n))
                self.rng.shuffle(self.order)
            out.append(self.order.pop())
        return out

    def state(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {"n": self.n, "order": list(self.order), "rng": [version, list(internal), gauss]}

    def load(self, state: dict[str, Any]) -> None:
        if int(state["n"]) != self.n:
            raise ValueError(
                f"The saved training state was made on {state['n']} prompts, not {self.n}: "
                "the prompt set changed since; remove the state to start over."
            )
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.order = [int(i) for i in state["order"]]


def policy_logprobs(
    lm: Any, sequences: torch.Tensor, attention_mask: torch.Tensor, prompt_width: int
) -> torch.Tensor:
    """log π_θ of each response token, with gradients: ``reference_logprobs`` for the model
    being trained, projecting only the response positions onto the vocabulary."""
    keep = sequences.shape[1] - prompt_width + 1
    out = lm(
        input_ids=sequences,
        attention_mask=attention_mask,
        position_ids=position_ids_for(attention_mask),
        use_cache=False,
        logits_to_keep=keep,
    )
    return gather_logprobs(out.logits[:, -keep:-1], sequences[:, prompt_width:])


class GRPOTrainer:
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: GRPOConfig,
        *,
        reward: RewardFn | None = None,
        reference: PreTrainedModel | None = None,
    ) -> None:
        if reward is None:
            raise ValueError("GRPO needs a reward function (the combined reward) to score samples.")
        if reference is not None:
            ours, theirs = model.get_output_embeddings(), reference.get_output_embeddings()
            if (
                ours is not None
                and theirs is not None
                and ours.weight.shape[0] != theirs.weight.shape[0]
            ):
                raise ValueError(
                    f"The reference model's vocabulary ({theirs.weight.shape[0]} tokens) differs "
                    f"from the policy's ({ours.weight.shape[0]}): it must share the policy's tokenizer."
                )
        self.config, self.tokenizer, self.reward = config, tokenizer, reward
        torch.manual_seed(config.seed)
        if config.gradient_checkpointing:
            gradient_checkpointing_enable(model)
        self.lm = model
        self.reference: Any  # a model, or ``AdaptersOff`` over the policy's own weights
        if reference is not None:
            self.reference = reference.eval().requires_grad_(False)
        elif not config.lora.enabled:
            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.adapted = None
        if config.lora.enabled:
            self.adapted = lora_wrap(model, config.lora, task_type="CAUSAL_LM")
            if reference is None:
                self.reference = AdaptersOff(model)
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: GRPOConfig,
        *,
        reward: RewardFn | None = None,
        reference_path: str | Path | None = None,
        device: str | None = None,
    ) -> GRPOTrainer:
        """Load the policy (and a reference other than the starting policy, which must use
        the same tokenizer): on CUDA when there is one, in bf16 there when ``config.bf16``,
        float32 on the CPU."""
        from modeling.ml.tokenizer import tokenizer_load

        tokenizer = tokenizer_load(path)
        reference = None
        if reference_path is not None:
            if tokenizer_load(reference_path).get_vocab() != tokenizer.get_vocab():
                raise ValueError(
                    f"The reference model at {reference_path} uses a different tokenizer from "
                    f"the policy at {path}; the KL term compares the same tokens, so use a "
                    "reference trained from the same base."
                )
            reference = causal_lm_load(reference_path, bf16=config.bf16, device=device)
        lm = causal_lm_load(path, bf16=config.bf16, device=device)
        return cls(lm, tokenizer, config, reward=reward, reference=reference)

    def total_steps(self, n_items: int) -> int:
        """Steps ``train`` runs and reports: ``config.steps`` sampling rounds, each with its
        ``updates_per_step`` × mini-batches optimizer updates (the prompts cycle, so the
        count does not depend on how many there are)."""
        if n_items < 1:
            raise ValueError("The prompt set is empty: GRPO has nothing to sample from.")
        return self.config.steps

    # --- one step, pass by pass (the benchmark times each) ---

    def sample(self, prompts: Sequence[PromptExample]) -> tuple[SampledTokens, list[str]]:
        """G samples per prompt in one ``generate`` call; rows i·G … i·G+G−1 are prompt i's."""
        cfg = self.config
        params = SamplingParams(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            num_samples=cfg.group_size,
        )
        self.lm.eval()
        fmt = chat_for(self.tokenizer)
        sampled = sample_tokens(
            self.lm, self.tokenizer, [fmt.prompt(p.turns) for p in prompts], params
        )
        return sampled, decode_responses(self.tokenizer, sampled)

    def score(
        self, prompts: Sequence[PromptExample], responses: Sequence[str], step: int
    ) -> torch.Tensor:
        """The combined reward of every response, (prompts, G)."""
        g = self.config.group_size
        scores = self.reward(
            [list(p.turns) for p in prompts for _ in range(g)],
            list(responses),
            [p.safety_tagged for p in prompts for _ in range(g)],
        )
        if len(scores) != len(responses):
            raise ValueError(
                f"The reward function returned {len(scores)} scores for {len(responses)} responses."
            )
        rewards = torch.tensor([float(s) for s in scores], dtype=torch.float32)
        if not torch.isfinite(rewards).all():
            raise NonFiniteError(f"The reward returned a NaN or infinite score at step {step}.")
        return rewards.view(len(prompts), g)

    @torch.no_grad()
    def reference_pass(self, sampled: SampledTokens) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(old, reference) log-probabilities of the sampled tokens. The rollout policy's are
        only needed when a sample is used after the first update (several mini-batches or
        passes); otherwise the ratio's denominator is the current log-probability itself."""
        seq, attn, width = sampled.sequences, sampled.attention_mask, sampled.prompt_width
        old = None
        if self._updates_per_step(seq.shape[0]) > 1:
            old = reference_logprobs(self.lm, seq, attn, width)
        return old, reference_logprobs(self.reference, seq, attn, width)

    def update(
        self,
        sampled: SampledTokens,
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor | None,
        ref_logprobs: torch.Tensor,
        step: int,
    ) -> dict[str, float]:
        """``updates_per_step`` passes of mini-batch updates; the mean loss, KL and clip
        fraction over them."""
        cfg = self.config
        seq, attn, width = sampled.sequences, sampled.attention_mask, sampled.prompt_width
        mask = sampled.response_mask.to(ref_logprobs.dtype)
        advantages = advantages.to(ref_logprobs.device)
        n = seq.shape[0]
        # A per-step generator: the mini-batch order needs no state of its own to resume.
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        totals = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0}
        updates = 0
        self.lm.train()
        for _ in range(cfg.updates_per_step):
            for idx in torch.randperm(n, generator=generator).split(cfg.mini_batch_size):
                idx = idx.to(seq.device)
                logprobs = policy_logprobs(self.lm, seq[idx], attn[idx], width)
                old = logprobs.detach() if old_logprobs is None else old_logprobs[idx]
                loss, stats = policy_loss(
                    logprobs,
                    old,
                    ref_logprobs[idx],
                    advantages[idx],
                    mask[idx],
                    clip_range=cfg.clip_range,
                    clip_range_high=cfg.clip_range_high,
                    kl_coef=cfg.kl_coef,
                    normalisation=cfg.loss_normalisation,
                    max_tokens=cfg.max_new_tokens,
                )
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"The GRPO loss became {loss.item()} at step {step}.")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.lm.parameters() if p.requires_grad], cfg.max_grad_norm
                )
                self.optimizer.step()
                totals["loss"] += loss.item()
                totals["kl"] += stats["kl"].item()
                totals["clip_fraction"] += stats["clip_fraction"].item()
                updates += 1
        return {k: v / updates for k, v in totals.items()}

    def step(self, prompts: Sequence[PromptExample], *, step: int = 1, total: int = 1) -> dict:
        """One GRPO step on ``prompts``: sample, score, compare within groups, update."""
        cfg = self.config
        start = time.perf_counter()
        timings = {}
        t0 = time.perf_counter()
        sampled, responses = self.sample(prompts)
        timings["generation"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rewards = self.score(prompts, responses, step)
        timings["reward"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        old, ref = self.reference_pass(sampled)
        timings["forward"] = time.perf_counter() - t0
        advantages = group_advantages(rewards, baseline=cfg.baseline, scale=cfg.scale_rewards).view(
            -1
        )
        t0 = time.perf_counter()
        metrics = self.update(sampled, advantages, old, ref, step)
        timings["train"] = time.perf_counter() - t0
        return {
            "step": step,
            "total": total,
            "loss": metrics["loss"],
            "reward": float(rewards.mean()),
            "reward_std": float(rewards.std()),
            "kl": metrics["kl"],
            "clip_fraction": metrics["clip_fraction"],
            "response_length": float(sampled.response_mask.sum(dim=1).float().mean()),
            "seconds": time.perf_counter() - start,
            "timings": timings,
        }

    def train(
        self,
        data: Sequence[PromptExample],
        *,
        on_step: Callable[[dict], None] | None = None,
        state: TrainState | None = None,
    ) -> list[dict]:
        """Run ``config.steps`` steps, each on the next ``prompts_per_step`` prompts of a
        seeded shuffled cycle. With ``state``, continue where a saved state stopped (same
        prompt order and random state) and save one every ``state.every`` steps. Returns the
        steps this call ran, in order."""
        cfg = self.config
        total = self.total_steps(len(data))
        cycle = PromptCycle(len(data), cfg.seed)
        start = 0
        if state is not None:
            start = state.restore(self.lm, self.optimizer)
            if start:
                cycle.load(state.extra["prompt_order"])
        history = []
        for step in range(start + 1, total + 1):
            batch = [data[i] for i in cycle.take(cfg.prompts_per_step)]
            row = self.step(batch, step=step, total=total)
            if not math.isfinite(row["reward"]):
                raise NonFiniteError(f"The mean reward is not finite at step {step}.")
            history.append(row)
            if on_step is not None:
                on_step(row)
            if state is not None:
                state.save_if_due(
                    step, total, self.lm, self.optimizer, extra={"prompt_order": cycle.state()}
                )
        return history

    def save(self, out_dir: str | Path) -> Path:
        """Write the policy as a causal-LM checkpoint with its tokenizer, atomically. LoRA
        adapters are merged into the weights first (training cannot go on after that)."""
        if self.adapted is not None:
            self.lm = lora_merge(self.adapted)
            self.adapted = None
        return policy_write(self.lm, self.tokenizer, out_dir)

    def _updates_per_step(self, n: int) -> int:
        return self.config.updates_per_step * math.ceil(n / self.config.mini_batch_size)
