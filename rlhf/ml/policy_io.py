"""Reading a policy checkpoint onto the device it trains or samples on, and writing a
trained one: shared by the generator and every trainer. Django-free.

    lm = causal_lm_load(path, bf16=config.bf16)   # CUDA when there is one, else the CPU
    policy_write(lm, tokenizer, out_dir)            # atomic: no folder, or a whole one
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modeling.ml.checkpoints import partial_dir, publish


def causal_lm_load(path: str | Path, *, bf16: bool = True, device: str | None = None) -> Any:
    """The causal LM at ``path`` on ``device`` (default: CUDA when there is one, else the
    CPU): in bfloat16 on CUDA when ``bf16``, float32 otherwise (the CPU is always float32)."""
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") and bf16 else torch.float32
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return lm.to(device)  # type: ignore[arg-type]  # see modeling/ml/basemodel.py


def policy_write(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Write ``model`` (LoRA adapters already merged) and its tokenizer as a plain
    causal-LM folder, atomically: a reader sees no folder or a whole one."""
    tmp = partial_dir(out_dir)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return publish(tmp, out_dir)
