"""LoRA adapters (``peft``) and memory options, shared by every trainer. Django-free.

Reward training, rejection-sampling fine-tuning and PPO each take a ``LoraConfig`` (a
section of their own config): with ``rank > 0`` the model's weights stay frozen and only
low-rank adapters on ``target_modules`` train (Hu et al. 2021, W + (α/r)·B·A); a reward
model's scalar head trains in full. PPO's reference policy is then the same model with its
adapters switched off (``adapters_disabled``): one copy of the weights in memory.

When the trained model is written, the adapters are merged into the weights
(``lora_merge``): the folder is a plain checkpoint any tool loads, and the registry
records that it came from LoRA (``lora_summary``).

    model = lora_wrap(model, LoraConfig(rank=8), task_type="CAUSAL_LM")
    ...train...
    model = lora_merge(model)

The config (``LoraConfig``) lives with the other training configs in
``modeling.ml.training.config``, which the web process imports; this module imports peft
and torch inside its functions, in workers only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from modeling.ml.training.config import ALL_LINEAR, LoraConfig

if TYPE_CHECKING:
    from torch import nn

TaskType = Literal["CAUSAL_LM", "SEQ_CLS"]


class LoraTargetError(ValueError):
    """LoRA target modules that the model does not have."""


__all__ = ["LoraConfig", "LoraTargetError", "lora_merge", "lora_summary", "lora_wrap"]


def linear_module_names(model: nn.Module) -> list[str]:
    """The last name part of every linear layer (what ``target_modules`` matches), sorted."""
    from torch import nn

    names = set()
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":  # GPT-2's
            names.add(path.rsplit(".", 1)[-1])
    return sorted(names)


def lora_check_targets(model: nn.Module, config: LoraConfig) -> None:
    """Raise ``LoraTargetError`` naming the target modules ``model`` lacks and those it has."""
    if config.target_modules == (ALL_LINEAR,):
        return
    have = linear_module_names(model)
    missing = [m for m in config.target_modules if m not in have]
    if missing:
        raise LoraTargetError(
            f"LoRA target module(s) {', '.join(missing)} not found in the model "
            f"({type(model).__name__}); its linear layers are: {', '.join(have)} "
            f"(or use {ALL_LINEAR!r})"
        )


def lora_wrap(model: Any, config: LoraConfig, *, task_type: TaskType) -> Any:
    """``model`` with LoRA adapters injected (a ``peft.PeftModel``), base weights frozen.

    ``SEQ_CLS`` also trains the classification head (``score``/``classifier``) in full.
    The adapters live inside ``model``'s own modules, so ``model`` itself (now returned by
    ``.get_base_model()``) runs with them.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    lora_check_targets(model, config)
    targets: str | list[str] = (
        ALL_LINEAR if config.target_modules == (ALL_LINEAR,) else list(config.target_modules)
    )
    peft_config = PeftLoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        task_type=task_type,
    )
    return get_peft_model(model, peft_config)


def is_lora(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def lora_merge(model: Any) -> Any:
    """The plain model with the adapters added into its weights (a no-op without LoRA)."""
    return model.merge_and_unload() if is_lora(model) else model


class AdaptersOff:
    """Calls ``lm`` with its adapters switched off: PPO's frozen reference π_0 as the same
    weights as the policy, not a second copy. Not an ``nn.Module`` on purpose: the policy's
    parameters must not be frozen or moved through it."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm

    def __call__(self, **inputs: Any) -> Any:
        with adapters_disabled(self.lm):
            return self.lm(**inputs)


@contextlib.contextmanager
def adapters_disabled(model: Any) -> Iterator[None]:
    """Run ``model`` (a ``PeftModel``, or the model inside one) as its base: the reference
    policy of PPO without a second copy of the weights."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def lora_summary(config: LoraConfig) -> dict:
    """What the registry records about how a model's weights were trained."""
    if not config.enabled:
        return {"weights": "full fine-tuning"}
    return {"weights": "LoRA, merged", "lora": config.to_dict()}


def gradient_checkpointing_enable(model: Any) -> None:
    """Recompute activations in the backward pass instead of keeping them (less memory,
    about a third more compute); the non-reentrant variant works with frozen inputs (LoRA)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5: the new name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # It applies in training mode only: generation (eval mode) keeps its KV cache.


def gradient_checkpointing_disable(model: Any) -> None:
    """Back to keeping activations in the backward pass."""
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()
