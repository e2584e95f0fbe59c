"""A tiny randomly initialised Llama policy with a word-level tokenizer, made locally.

For tests, benchmarks and demos that must not download anything; the project's real
default base model comes from the modeling app. The tokenizer carries
``modeling.ml.chat.SPECIAL_TOKENS`` and Pairwise's template, like the models Pairwise makes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modeling.ml.chat import PAIRWISE_JINJA, SPECIAL_TOKENS

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

WORDS = [
    "yes",
    "no",
    "the",
    "a",
    "an",
    "and",
    "or",
    "to",
    "of",
    "in",
    "is",
    "it",
    "you",
    "i",
    "we",
    "they",
    "he",
    "she",
    "this",
    "that",
    "what",
    "how",
    "why",
    "when",
    "where",
    "who",
    "can",
    "do",
    "does",
    "please",
    "thanks",
    "hello",
    "help",
    "boil",
    "egg",
    "water",
    "minutes",
    "cold",
    "hot",
    "good",
    "bad",
    "safe",
    "unsafe",
    "answer",
    "question",
    "tell",
    "me",
    "about",
    "sure",
    "sorry",
    "cannot",
    "will",
    "would",
    "should",
    "could",
    "make",
    "take",
    "give",
    "time",
    "day",
    "way",
    "thing",
]


def make_tiny_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {
        tok: i for i, tok in enumerate(["<pad>", "<unk>", "<s>", "</s>", *SPECIAL_TOKENS, *WORDS])
    }
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.chat_template = PAIRWISE_JINJA
    return tokenizer


def make_tiny_policy(
    path: str | Path | None = None,
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    context: int = 256,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Returns ``(model, tokenizer)``; saves both to ``path`` when given."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    if path is not None:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    return model, tokenizer
