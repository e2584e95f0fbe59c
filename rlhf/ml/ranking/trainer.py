"""RRHF and PRO training on ranked samples: K responses per prompt, best first by the
combined reward (``rlhf.ml.ranked.sample_ranked`` makes them), one optimizer step per
``batch_size`` prompts.

    trainer = RankingTrainer.from_pretrained(policy_dir, RRHFConfig(...))
    history = trainer.train(ranked, on_step=print, state=TrainState(work / "state", every=5))
    trainer.save(out_dir)   # a plain causal-LM checkpoint (LoRA merged)

Each step puts the K responses of every prompt of the batch in one padded forward pass,
takes each response's length-normalised log-probability p_i (prompt tokens excluded) and
minimises the config's loss (``rlhf.ml.ranking.losses``). Neither method needs a reference
model or a reward model while training: the rewards arrive with the samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modeling.ml.chat import chat_for
from modeling.ml.lora import gradient_checkpointing_enable, lora_merge, lora_wrap
from rlhf.ml.policy_io import causal_lm_load, policy_write
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.ppo.model import gather_logprobs
from rlhf.ml.ranked import RankedSamples
from rlhf.ml.ranking.config import RankingConfig, RankingLoss
from rlhf.ml.ranking.losses import pro_loss, rrhf_loss

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from rlhf.ml.prompts import RewardFn
    from rlhf.ml.train_state import TrainState

LOSS_NAMES = {"rrhf": "RRHF", "pro": "PRO"}


def check_ranked(data: Sequence[RankedSamples]) -> int:
    """Raise ``ValueError`` (``NonFiniteError`` for a NaN reward) naming the first prompt
    that cannot be trained on; return K, the responses per prompt."""
    if not data:
        raise ValueError("No ranked samples: there is nothing to train on.")
    k = len(data[0].responses)
    for i, item in enumerate(data):
        n = len(item.responses)
        if n != len(item.rewards):
            raise ValueError(f"Prompt {i} has {n} responses but {len(item.rewards)} rewards.")
        if n < 2:
            raise ValueError(
                f"Prompt {i} has {n} response: ranking needs at least 2 per prompt "
                f"(K, num_samples, must be 2 or more)."
            )
        if n != k:
            raise ValueError(
                f"Prompt {i} has {n} responses where prompt 0 has {k}: every prompt needs "
                f"the same K."
            )
        bad = [j for j, r in enumerate(item.rewards) if not math.isfinite(r)]
        if bad:
            raise NonFiniteError(
                f"The reward of response {bad[0]} of prompt {i} is {item.rewards[bad[0]]}."
            )
        if any(b > a for a, b in zip(item.rewards, item.rewards[1:], strict=False)):
            raise ValueError(
                f"The responses of prompt {i} are not sorted best first by reward "
                f"(rank them with rlhf.ml.ranked.rank)."
            )
    return k


class RankingTrainer:
    """Trains a causal LM with RRHF (``RRHFConfig``) or PRO (``PROConfig``).

    ``loss``, when given, must name the config's method. ``reward`` and ``reference`` are
    accepted like every policy trainer's and not used: the samples come ranked, and
    neither loss has a reference term.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: RankingConfig,
        *,
        loss: RankingLoss | None = None,
        reward: RewardFn | None = None,
        reference: Any = None,
    ) -> None:
        method = getattr(type(config), "loss", None)
        if method not in LOSS_NAMES:
            raise ValueError(
                f"RankingTrainer needs an RRHFConfig or a PROConfig (got {type(config).__name__})."
            )
        if loss is not None and loss != method:
            raise ValueError(
                f"loss={loss!r} does not match the config, a {type(config).__name__} ({method!r})."
            )
        self.config, self.tokenizer, self.method = config, tokenizer, method
        self.chat = chat_for(tokenizer)
        torch.manual_seed(config.seed)
        if config.gradient_checkpointing:
            gradient_checkpointing_enable(model)
        # ``lm`` is the causal LM itself; with LoRA its layers carry the adapters and
        # ``model`` is the peft wrapper whose trainable parameters are the adapters.
        self.lm: Any = model
        self.model: Any = (
            lora_wrap(model, config.lora, task_type="CAUSAL_LM") if config.lora.enabled else model
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: RankingConfig,
        *,
        loss: RankingLoss | None = None,
        reward: RewardFn | None = None,
        reference_path: str | Path | None = None,
        device: str | None = None,
    ) -> RankingTrainer:
        """Load the policy at ``path``: on CUDA when there is one (bf16 when
        ``config.bf16``), float32 on the CPU. ``reference_path`` is not used (see the class)."""
        from modeling.ml.tokenizer import tokenizer_load

        model = causal_lm_load(path, bf16=config.bf16, device=device)
        return cls(model, tokenizer_load(path), config, loss=loss, reward=reward)

    @property
    def name(self) -> str:
        return LOSS_NAMES[self.method]

    def total_steps(self, n_items: int) -> int:
        """Optimizer steps ``train`` runs on ``n_items`` ranked prompts."""
        return self.config.epochs * math.ceil(n_items / self.config.batch_size)

    def batches(self, n_items: int) -> list[list[int]]:
        """The prompt indices of every step: a fresh shuffle per epoch drawn from
        ``config.seed`` alone, so a resumed run sees the same order."""
        generator = torch.Generator().manual_seed(self.config.seed)
        size = self.config.batch_size
        out: list[list[int]] = []
        for _ in range(self.config.epochs):
            order = torch.randperm(n_items, generator=generator).tolist()
            out.extend(order[lo : lo + size] for lo in range(0, n_items, size))
        return out

    def encode(self, items: Sequence[RankedSamples]) -> dict[str, torch.Tensor]:
        """Every response of ``items`` as one right-padded row after its prompt:
        ``input_ids`` and ``attention_mask`` (P·K, T), and ``response_mask`` (P·K, T−1)
        marking the targets ``input_ids[:, 1:]`` that are response tokens. A row keeps at
        most ``max_length`` tokens: the response first, the prompt cut on the left."""
        max_length = self.config.max_length
        rows, starts = [], []
        for item in items:
            for response in item.responses:
                prompt_ids, response_ids = self.chat.encode_dialogue(item.turns, response)
                response_ids = response_ids[: max_length - 1]  # one prompt token at least
                prompt_ids = prompt_ids[
                    max(0, len(prompt_ids) - (max_length - len(response_ids))) :
                ]
                rows.append(prompt_ids + response_ids)
                starts.append(len(prompt_ids))
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        positions = torch.arange(width - 1)
        lengths = torch.tensor([len(r) for r in rows])
        first = torch.tensor(starts) - 1  # the target index of the first response token
        return {
            "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
            "attention_mask": (torch.arange(width) < lengths[:, None]).long(),
            "response_mask": (positions >= first[:, None]) & (positions < lengths[:, None] - 1),
        }

    def sequence_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(length-normalised log-prob of each row's response, its token count), both (rows,).

        The output head runs on the response positions only (as PPO's policy does): the
        prompts' logits over the vocabulary, most of a (rows, T, V) tensor, are never made.
        """
        device = next(self.model.parameters()).device
        input_ids = batch["input_ids"].to(device)
        mask = batch["response_mask"].to(device)
        hidden = self.lm.base_model(
            input_ids=input_ids, attention_mask=batch["attention_mask"].to(device), use_cache=False
        ).last_hidden_state[:, :-1]
        logits = self.lm.get_output_embeddings()(hidden[mask])  # (response tokens, V)
        picked = gather_logprobs(logits, input_ids[:, 1:][mask])
        token_logps = torch.zeros(mask.shape, dtype=picked.dtype, device=device)
        token_logps = token_logps.masked_scatter(mask, picked)
        lengths = mask.sum(dim=1)
        return token_logps.sum(dim=1) / lengths.clamp(min=1), lengths

    def loss(self, items: Sequence[RankedSamples]) -> tuple[torch.Tensor, dict[str, float]]:
        """The configured loss on ``items`` and its metrics (floats)."""
        k = len(items[0].responses)
        seq_logps, lengths = self.sequence_logps(self.encode(items))
        seq_logps = seq_logps.view(len(items), k)
        rewards = torch.tensor([item.rewards for item in items], device=seq_logps.device)
        best_nll = -seq_logps[:, 0]  # token-averaged NLL of the best (column 0: best first)
        cfg = self.config
        if self.method == "rrhf":
            loss, stats = rrhf_loss(seq_logps, rewards, best_nll, sft_weight=cfg.sft_weight)
        else:
            loss, stats = pro_loss(
                seq_logps,
                best_nll,
                sft_weight=cfg.sft_weight,
                rewards=rewards,
                reward_temperature=bool(getattr(cfg, "reward_temperature", False)),
            )
        metrics = {name: float(value) for name, value in stats.items()}
        metrics["reward_best"] = float(rewards[:, 0].mean())
        metrics["reward_mean"] = float(rewards.mean())
        metrics["response_length"] = float(lengths.float().mean())
        return loss, metrics

    def train(
        self,
        data: Sequence[RankedSamples],
        *,
        on_step: Callable[[dict], None] | None = None,
        state: TrainState | None = None,
    ) -> list[dict]:
        """``total_steps(len(data))`` optimizer steps over ``data``; with ``state``, continue
        from its saved step and save it every ``state.every`` steps. Returns each step's
        metrics (from the start or the resumed step on): step, total, loss, rank_loss,
        sft_loss, rank_accuracy, reward_best, reward_mean, response_length, seconds."""
        check_ranked(data)
        total = self.total_steps(len(data))
        batches = self.batches(len(data))
        fingerprint = {"items": len(data), "total": total, "method": self.method}
        start = 0
        if state is not None:
            start = state.restore(self.model, self.optimizer)
            if start and {k: state.extra.get(k) for k in fingerprint} != fingerprint:
                raise ValueError(
                    f"The saved training state in {state.folder} was made for other data or "
                    f"another method ({state.extra}, now {fingerprint}); remove it to start over."
                )
        history: list[dict] = []
        self.model.train()
        for step in range(start + 1, total + 1):
            t0 = time.perf_counter()
            loss, metrics = self.loss([data[i] for i in batches[step - 1]])
            if not torch.isfinite(loss):
                raise NonFiniteError(f"The {self.name} loss became {loss.item()} at step {step}.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], self.config.max_grad_norm
            )
            self.optimizer.step()
            row = {"step": step, "total": total, "loss": loss.item(), **metrics}
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            if on_step is not None:
                on_step(row)
            if state is not None:
                state.save_if_due(step, total, self.model, self.optimizer, extra=fingerprint)
        self.model.eval()
        return history

    def save(self, out_dir: str | Path) -> Path:
        """Write the policy as a causal-LM checkpoint with its tokenizer, atomically (a
        reader sees no folder or a whole one). LoRA adapters are merged into the weights
        first (training cannot go on after that)."""
        if self.config.lora.enabled:
            self.model = self.lm = lora_merge(self.model)
        return policy_write(self.model, self.tokenizer, out_dir)
