"""DPO from preference pairs: the reference's log-probs once, then AdamW on the DPO loss.

    trainer = DPOTrainer.from_pretrained(policy_dir, DPOConfig(beta=0.1))
    steps = trainer.train(pairs, on_step=print, state=TrainState(work / "state", every=5))
    trainer.save(out_dir)        # a plain causal-LM folder + tokenizer, LoRA merged

The reference π_ref is, in this order: the ``reference`` model given (e.g. loaded from
``reference_path``, whose tokenizer must equal the policy's); under LoRA, the policy's own
weights with the adapters off; otherwise the policy's weights as ``train`` starts. Its
summed log-probs of every chosen and rejected response are computed ONCE before the first
update, so only the policy is in memory while training (a reference loaded from
``reference_path`` is released right after). They are saved in the resumable state: a
resumed run must not recompute them from weights that have already moved.

Each optimizer step runs one forward pass over ``batch_size`` pairs, chosen and rejected
sharing their prompt in one packed row where the model allows (``data.dpo_batch``), and
applies the output head only at response positions. Metrics carry TRL's names.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from modeling.ml.lora import adapters_disabled, gradient_checkpointing_enable, lora_merge, lora_wrap
from modeling.ml.training.data import EncodedPair, batch_order
from modeling.ml.training.trainer import packed_attention_mask
from rlhf.ml.dpo.config import DPOConfig
from rlhf.ml.dpo.data import PreferencePair, dpo_batch, encode_preference_pairs
from rlhf.ml.dpo.losses import dpo_loss
from rlhf.ml.policy_io import causal_lm_load, policy_write
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.prompts import RewardFn
from rlhf.ml.train_state import TrainState

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def check_same_tokenizer(
    policy: PreTrainedTokenizerBase, reference: PreTrainedTokenizerBase
) -> None:
    """Raise ValueError unless both tokenizers map every token, and the special tokens, to
    the same ids: log-probs of the same text are only comparable on the same ids."""
    a, b = policy.get_vocab(), reference.get_vocab()
    problem = ""
    if len(a) != len(b):
        problem = f"a vocabulary of {len(b)} tokens against {len(a)}"
    else:
        for token, i in a.items():
            if b.get(token) != i:
                problem = f"token {token!r} has id {b.get(token)} against {i}"
                break
    if not problem:
        for name in ("bos_token_id", "eos_token_id"):
            if getattr(policy, name) != getattr(reference, name):
                problem = f"{name} {getattr(reference, name)} against {getattr(policy, name)}"
                break
    if problem:
        raise ValueError(
            f"The reference model's tokenizer differs from the policy's ({problem}); "
            "choose a reference trained from the same base as the policy."
        )


def supports_causal_packing(model: Any) -> bool:
    """Packed pairs need an attention kernel that takes a custom 4D mask and position ids."""
    return model.config._attn_implementation in ("sdpa", "eager")


def response_logps(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob of each response segment ``(2n,)``: chosen then rejected, and the
    per-token log-probs in the batch's token order). The output head runs only at the
    positions that predict a response token."""
    mask = batch["attention_mask"]
    inputs: dict[str, Any] = {"input_ids": batch["input_ids"], "use_cache": False}
    if mask.dim() == 4:
        inputs.update(
            attention_mask=packed_attention_mask(model, mask), position_ids=batch["position_ids"]
        )
    else:
        inputs["attention_mask"] = mask
    hidden = model.get_decoder()(**inputs).last_hidden_state
    picked = hidden[batch["token_rows"], batch["token_pred"]]
    logits = model.get_output_embeddings()(picked).float()
    token_logps = (
        torch.log_softmax(logits, dim=-1).gather(-1, batch["token_ids"][:, None]).squeeze(-1)
    )
    sums = torch.zeros(
        batch["lengths"].shape[0], dtype=token_logps.dtype, device=token_logps.device
    )
    return sums.index_add(0, batch["token_segment"], token_logps), token_logps


@torch.no_grad()
def encoded_logps(
    model: Any, encoded: Sequence[EncodedPair], *, pad_token_id: int, batch_size: int = 8
) -> torch.Tensor:
    """Summed log-probs ``(pairs, 2)`` (chosen, rejected) of encoded pairs under ``model``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    packed = supports_causal_packing(model)
    out = []
    for lo in range(0, len(encoded), batch_size):
        chunk = encoded[lo : lo + batch_size]
        batch = dpo_batch(chunk, pad_token_id=pad_token_id, packed=packed)
        logps, _ = response_logps(model, {k: v.to(device) for k, v in batch.items()})
        out.append(logps.view(2, len(chunk)).T.cpu())
    model.train(was_training)
    return torch.cat(out)


def sequence_logps(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    *,
    max_length: int = 1024,
    batch_size: int = 8,
) -> torch.Tensor:
    """Summed log-probs ``(pairs, 2)`` of each pair's chosen and rejected response."""
    encoded = encode_preference_pairs(tokenizer, pairs, max_length=max_length)
    return encoded_logps(model, encoded, pad_token_id=_pad_id(tokenizer), batch_size=batch_size)


def implicit_reward_accuracy(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[PreferencePair],
    reference_logps: torch.Tensor,
    *,
    max_length: int = 1024,
) -> float:
    """Share of held-out pairs whose implicit reward (log π − log π_ref) ranks the chosen
    response above the rejected one; ``reference_logps`` from ``sequence_logps`` on the
    reference with the same ``max_length``."""
    if not pairs:
        raise ValueError("No held-out pairs to evaluate the implicit reward on.")
    logps = sequence_logps(model, tokenizer, pairs, max_length=max_length)
    margin = (logps - reference_logps).float()
    return float((margin[:, 0] > margin[:, 1]).float().mean())


def pairs_digest(pairs: Sequence[PreferencePair]) -> str:
    """SHA-256 of the pairs in order: a saved state resumes only the run it was made for
    (online DPO samples new pairs on a rerun)."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.turns, p.chosen, p.rejected, p.margin], sort_keys=True).encode())
    return h.hexdigest()


def linear_schedule(step: int, total: int, warmup_ratio: float) -> float:
    """LR multiplier for 0-based ``step``: ``transformers``' linear schedule with warm-up
    (what TRL's DPOTrainer uses by default), warm-up steps ``ceil(ratio · total)``."""
    warmup = math.ceil(warmup_ratio * total)
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad or 0)


def _disable_dropout(model: torch.nn.Module) -> None:
    # As TRL: dropout would make the policy's log-probs disagree with the reference's at step 0.
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class DPOTrainer:
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: DPOConfig,
        *,
        reward: RewardFn | None = None,
        reference: PreTrainedModel | None = None,
    ) -> None:
        self.config, self.tokenizer, self.reward = config, tokenizer, reward
        if reference is not None:
            n_ref, n_pol = _vocab_rows(reference), _vocab_rows(model)
            if n_ref != n_pol:
                raise ValueError(
                    "The reference model's tokenizer differs from the policy's "
                    f"(embeddings for {n_ref} tokens against {n_pol}); choose a reference "
                    "trained from the same base as the policy."
                )
            reference.eval().requires_grad_(False)
        self.reference: Any = reference
        self.reference_path: Path | None = None  # loaded, used once and released in ``train``
        torch.manual_seed(config.seed)
        _disable_dropout(model)
        if config.gradient_checkpointing:
            gradient_checkpointing_enable(model)
        self.model: Any = (
            lora_wrap(model, config.lora, task_type="CAUSAL_LM") if config.lora.enabled else model
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )
        self.packed = supports_causal_packing(self.model)
        self.pad_token_id = _pad_id(tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: DPOConfig,
        *,
        reward: RewardFn | None = None,
        reference_path: str | Path | None = None,
        device: str | None = None,
    ) -> DPOTrainer:
        from modeling.ml.tokenizer import tokenizer_load

        tokenizer = tokenizer_load(path)
        if reference_path is not None:
            check_same_tokenizer(tokenizer, tokenizer_load(reference_path))
        trainer = cls(_load_lm(path, config, device), tokenizer, config, reward=reward)
        trainer.reference_path = Path(reference_path) if reference_path is not None else None
        return trainer

    def total_steps(self, n_items: int) -> int:
        return self.config.epochs * math.ceil(n_items / self.config.batch_size)

    def reference_logps(self, encoded: Sequence[EncodedPair]) -> torch.Tensor:
        """π_ref's summed log-probs ``(pairs, 2)``, as the module docstring says."""
        kwargs = {"pad_token_id": self.pad_token_id, "batch_size": self.config.batch_size}
        if self.reference is not None:
            return encoded_logps(self.reference, encoded, **kwargs)
        if self.reference_path is not None:
            device = str(next(self.model.parameters()).device)
            reference = _load_lm(self.reference_path, self.config, device)
            try:
                return encoded_logps(reference, encoded, **kwargs)
            finally:
                del reference
        if self.config.lora.enabled:
            with adapters_disabled(self.model):
                return encoded_logps(self.model, encoded, **kwargs)
        return encoded_logps(self.model, encoded, **kwargs)

    def train(
        self,
        data: Sequence[PreferencePair],
        *,
        on_step: Callable[[dict], None] | None = None,
        state: TrainState | None = None,
    ) -> list[dict]:
        """One optimizer step per batch of pairs for ``config.epochs`` epochs; returns each
        step's metrics (also passed to ``on_step``)."""
        config = self.config
        if not data:
            raise ValueError(
                "No preference pairs to train DPO on: the batches hold no human pairs."
            )
        encoded = encode_preference_pairs(self.tokenizer, data, max_length=config.max_length)
        total = self.total_steps(len(data))
        order = batch_order(
            encoded,
            batch_size=config.batch_size,
            num_epochs=config.epochs,
            seed=config.seed,
            group_by_length=True,
        )
        start = state.restore(self.model, self.optimizer) if state is not None else 0
        if start:
            extra = state.extra if state is not None else {}
            reference = extra.get("reference_logps")
            if reference is None or extra.get("pairs_digest") != pairs_digest(data):
                raise ValueError(
                    f"The saved DPO state {state.path if state else ''} was made for other pairs; "
                    "remove it to start over."
                )
        else:
            reference = self.reference_logps(encoded)
        if not torch.isfinite(reference).all():
            raise NonFiniteError("The reference model's log-probabilities are not finite.")
        device = next(self.model.parameters()).device
        reference = reference.to(device)
        digest = pairs_digest(data)
        history: list[dict] = []
        self.model.train()
        for step in range(start + 1, total + 1):
            t0 = time.perf_counter()
            idx = order[step - 1]
            n = len(idx)
            batch = dpo_batch(
                [encoded[i] for i in idx], pad_token_id=self.pad_token_id, packed=self.packed
            )
            batch = {k: v.to(device) for k, v in batch.items()}
            lr = config.learning_rate * linear_schedule(step - 1, total, config.warmup_ratio)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            logps, token_logps = self.forward_logps(batch)
            ref = reference[torch.tensor(idx, device=device)]
            losses, chosen_rewards, rejected_rewards = dpo_loss(
                logps[:n],
                logps[n:],
                ref[:, 0],
                ref[:, 1],
                beta=config.beta,
                loss_type=config.loss_type,
                label_smoothing=config.label_smoothing,
                margin=batch["margins"] if config.use_margin else None,
                chosen_lengths=batch["lengths"][:n],
                rejected_lengths=batch["lengths"][n:],
            )
            loss = losses.mean()
            metrics: dict[str, Any] = {}
            if config.nll_weight > 0:
                # RPO's NLL on the chosen response, per token (TRL's rpo_alpha)
                chosen_tokens = batch["token_segment"] < n
                nll = -token_logps[chosen_tokens].sum() / batch["lengths"][:n].sum()
                loss = loss + config.nll_weight * nll
                metrics["nll_loss"] = nll.item()
            if not torch.isfinite(loss):
                raise NonFiniteError(
                    f"The DPO loss became {loss.item()} at step {step} of {total}."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], config.max_grad_norm
            )
            self.optimizer.step()
            margins = chosen_rewards - rejected_rewards
            metrics = {
                "step": step,
                "total": total,
                "loss": loss.item(),
                "seconds": time.perf_counter() - t0,
                "learning_rate": lr,
                "rewards/chosen": chosen_rewards.mean().item(),
                "rewards/rejected": rejected_rewards.mean().item(),
                "rewards/margins": margins.mean().item(),
                "rewards/accuracies": (margins > 0).float().mean().item(),
                "logps/chosen": logps[:n].mean().item(),
                "logps/rejected": logps[n:].mean().item(),
                **metrics,
            }
            history.append(metrics)
            if (
                on_step is not None
            ):  # before the save: a state never runs ahead of the steps reported
                on_step(metrics)
            if state is not None:
                state.save_if_due(
                    step,
                    total,
                    self.model,
                    self.optimizer,
                    extra={"reference_logps": reference.cpu(), "pairs_digest": digest},
                )
        self.model.eval()
        return history

    def forward_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return response_logps(self.model, batch)

    def save(self, out_dir: str | Path) -> Path:
        """Write the policy as a causal-LM checkpoint with its tokenizer, atomically. LoRA
        adapters are merged into the weights first (training cannot go on after that)."""
        if self.config.lora.enabled:
            self.model = lora_merge(self.model)
        return policy_write(self.model, self.tokenizer, out_dir)


def _load_lm(path: str | Path, config: DPOConfig, device: str | None) -> Any:
    return causal_lm_load(path, bf16=config.bf16, device=device)


def _vocab_rows(model: PreTrainedModel) -> int:
    return int(cast(torch.nn.Embedding, model.get_input_embeddings()).num_embeddings)
