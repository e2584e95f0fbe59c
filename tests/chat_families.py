"""Tiny randomly initialised models of three families, each with a tokenizer carrying that
family's real chat template and special tokens, built locally (never downloaded).

- ``llama``: Llama 3's template (header markers, ``<|eot_id|>``, BOS written by the
  template), generation config EOS ``[<|end_of_text|>, <|eot_id|>]``;
- ``qwen2``: Qwen2's ChatML (``<|im_start|>``/``<|im_end|>``, a default system prompt, no BOS);
- ``gpt_neox``: OpenAssistant's Pythia template (``<|prompter|>``/``<|assistant|>``, turns
  closed by EOS ``<|endoftext|>``); it shares ``<|system|>``/``<|assistant|>`` with
  Pairwise's markers but not the rest, so Pairwise must still choose the model's own.

The Llama and GPT-NeoX tokenizers are word-level (a small vocabulary, whitespace split), so
every sampled token sequence is the one tokenisation of its text and a drift test can ask
for equal ids; Qwen2's is a small byte-level BPE, as transformers always loads that family's.
"""

from __future__ import annotations

import json
from pathlib import Path

# The templates as the families ship them in tokenizer_config.json (Meta-Llama-3-8B-Instruct,
# Qwen2-0.5B-Instruct, OpenAssistant/oasst-sft-4-pythia-12b-epoch-3.5).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
OASST_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|prompter|>' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ '<|system|>' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '<|assistant|>' + message['content'] + eos_token }}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    "{% endfor %}"
)

FAMILIES = {
    "llama": {
        "template": LLAMA3_TEMPLATE,
        "specials": [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|finetune_right_pad_id|>",
        ],
        "tokens": {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "pad_token": "<|finetune_right_pad_id|>",
        },
        "generation_eos": ["<|end_of_text|>", "<|eot_id|>"],
        "end_of_turn": "<|eot_id|>",
    },
    "qwen2": {
        "template": QWEN2_TEMPLATE,
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        "generation_eos": ["<|im_end|>", "<|endoftext|>"],
        "end_of_turn": "<|im_end|>",
    },
    "gpt_neox": {
        "template": OASST_TEMPLATE,
        "specials": ["<|endoftext|>", "<|padding|>", "<|prompter|>", "<|assistant|>", "<|system|>"],
        "tokens": {
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|padding|>",
        },
        "generation_eos": ["<|endoftext|>"],
        "end_of_turn": "<|endoftext|>",
    },
}

WORDS = [
    "system",
    "user",
    "assistant",
    "You",
    "are",
    "a",
    "helpful",
    "assistant.",
    "hello",
    "hi",
    "yes",
    "no",
    "the",
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
    "this",
    "that",
    "what",
    "how",
    "why",
    "can",
    "do",
    "please",
    "thanks",
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
    "answer",
    "question",
    "tell",
    "me",
    "about",
    "sure",
    "sorry",
    "will",
    "make",
    "time",
]


def make_family_tokenizer(family: str):
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    spec = FAMILIES[family]
    specials = [AddedToken(t, special=True, normalized=False) for t in spec["specials"]]
    if family == "qwen2":
        # transformers always loads a qwen2 folder's tokenizer as its byte-level BPE
        # (Qwen2Tokenizer): train a small one, as the family's real tokenizer is.
        from tokenizers import decoders, trainers

        core = Tokenizer(models.BPE())
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=spec["specials"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        core.train_from_iterator([" ".join(WORDS)] * 4 + ["\n".join(WORDS)], trainer=trainer)
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **spec["tokens"])
    else:
        vocab = {tok: i for i, tok in enumerate(["<unk>", *dict.fromkeys(WORDS)])}
        core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        core.add_special_tokens(specials)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=core, unk_token="<unk>", **spec["tokens"]
        )
    tokenizer.chat_template = spec["template"]
    return tokenizer


def make_family_model(family: str, path: str | Path, *, hidden: int = 32, seed: int = 0) -> Path:
    """A tiny causal LM of ``family`` with its tokenizer and generation config, in ``path``."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        GenerationConfig,
        GPTNeoXConfig,
        LlamaConfig,
        Qwen2Config,
    )

    path = Path(path)
    tokenizer = make_family_tokenizer(family)
    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "max_position_embeddings": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "tie_word_embeddings": False,
    }
    config = {
        "llama": lambda: LlamaConfig(
            **ids, num_key_value_heads=2, architectures=["LlamaForCausalLM"]
        ),
        "qwen2": lambda: Qwen2Config(
            **ids, num_key_value_heads=2, architectures=["Qwen2ForCausalLM"]
        ),
        "gpt_neox": lambda: GPTNeoXConfig(**ids, architectures=["GPTNeoXForCausalLM"]),
    }[family]()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[
            tokenizer.convert_tokens_to_ids(t) for t in FAMILIES[family]["generation_eos"]
        ],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_plain_model(path: str | Path) -> Path:
    """A causal LM whose tokenizer has neither a chat template nor Pairwise's markers."""
    path = make_family_model("qwen2", path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    for name in ("chat_template.jinja", "chat_template.json"):
        (path / name).unlink(missing_ok=True)
    return path
