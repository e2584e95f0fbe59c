"""Real clients: the pairwise export of HH data loads with `datasets` and trains with TRL.

A tiny randomly initialised Llama and a word-level tokenizer trained on the exported text
stand in for real checkpoints (nothing is downloaded).
"""

import copy
import gzip
import io
import itertools
import json

import pytest

from annotation import services
from annotation.export import formats
from annotation.export.selectors import SnapshotFilters
from annotation.export.services import snapshot_build_files
from tests.factories import BatchFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.shared_data]

# The markers of modeling.ml.chat, as a Jinja chat template for `apply_chat_template`.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["[PAD]", "[UNK]", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def tiny_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        texts, trainers.WordLevelTrainer(vocab_size=2000, special_tokens=SPECIAL)
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        eos_token="<|end|>",
        additional_special_tokens=SPECIAL[2:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama(cls, tokenizer, **kw):
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **kw,
    )
    return cls(config)


@pytest.fixture
def pairwise_export(shared_data, tmp_path):
    """The pairwise file of a batch built from the first 48 rows of HH helpful-base."""
    with gzip.open(shared_data / "hh-rlhf" / "helpful-base" / "test.jsonl.gz", "rb") as f:
        head = b"".join(itertools.islice(f, 48))
    services.comparisons_import(
        batch=BatchFactory(name="hh-trl"),
        stream=io.BytesIO(head),
        fmt="hh",
        category="helpfulness",
        skip_invalid=True,
    )
    result = snapshot_build_files(
        filters=SnapshotFilters.from_dict({"batches": ["hh-trl"]}), work_dir=tmp_path / "snap"
    )
    return result.directory / formats.PAIRWISE_JSONL


def _texts(path):
    for line in path.read_text().splitlines():
        row = json.loads(line)
        yield " ".join(m["content"] for m in row["prompt"] + row["chosen"] + row["rejected"])


def test_reward_and_dpo_trainers_run_on_the_pairwise_export(pairwise_export, tmp_path):
    from datasets import load_dataset
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    dataset = load_dataset("json", data_files=str(pairwise_export), split="train")
    assert len(dataset) >= 40 and {"prompt", "chosen", "rejected", "margin"} <= set(
        dataset.column_names
    )
    assert dataset[0]["chosen"][0]["role"] == "assistant"
    tokenizer = tiny_tokenizer(_texts(pairwise_export))
    common = {
        "per_device_train_batch_size": 4,
        "max_steps": 3,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "max_length": 256,
        "seed": 0,
    }

    reward_model = tiny_llama(LlamaForSequenceClassification, tokenizer, num_labels=1)
    reward = RewardTrainer(
        model=reward_model,
        args=RewardConfig(output_dir=str(tmp_path / "rm"), **common),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    out = reward.train()
    assert out.global_step == 3 and out.training_loss == out.training_loss  # ran, loss is not NaN

    policy = tiny_llama(LlamaForCausalLM, tokenizer)
    dpo = DPOTrainer(
        model=policy,
        ref_model=copy.deepcopy(policy),
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    out = dpo.train()
    assert out.global_step == 3 and out.training_loss == out.training_loss
