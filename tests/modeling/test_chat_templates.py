"""Bring your own model: each registered model speaks its own chat template in every stage.

Tiny randomly initialised Llama, Qwen2 and GPT-NeoX models, each with its family's real
template (tests/chat_families.py), through registration, the one template module
(``modeling.ml.chat``), sampling, reward scoring and training, rejection sampling, PPO and
live annotation; and the folders Pairwise must refuse, with the way out it offers.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from modeling import services
from modeling.ml.chat import MODEL, PAIRWISE, ChatTemplateError, chat_for, template_decide
from modeling.models import ModelVersion
from tests.chat_families import FAMILIES, make_family_model, make_plain_model

DIALOGUES = [
    [{"role": "user", "content": "how do i boil an egg"}],
    [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "tell me about water please"},
    ],
]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    return {f: make_family_model(f, tmp_path_factory.mktemp(f)) for f in FAMILIES}


def _tokenizer(path):
    from modeling.ml.tokenizer import tokenizer_load

    return tokenizer_load(path)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_speaks_its_own_template_and_stops_on_its_own_tokens(family, family_dirs):
    path = family_dirs[family]
    spec = FAMILIES[family]
    tokenizer = _tokenizer(path)
    vocab_before = len(tokenizer)
    assert template_decide(path).name == MODEL
    fmt = chat_for(tokenizer)
    assert fmt.name == MODEL and fmt.end_of_turn == spec["end_of_turn"]
    expected = {
        tokenizer.convert_tokens_to_ids(t) for t in [spec["end_of_turn"], *spec["generation_eos"]]
    }
    assert set(fmt.stop_token_ids) == expected
    turns = DIALOGUES[1]
    assert fmt.prompt(turns) == tokenizer.apply_chat_template(
        turns, tokenize=False, add_generation_prompt=True
    )
    # The dialogue with its response is what the template itself writes, up to the end of turn.
    whole = tokenizer.apply_chat_template(
        [*turns, {"role": "assistant", "content": "yes"}], tokenize=False
    )
    assert whole.startswith(fmt.dialogue(turns, "yes"))
    assert "<|user|>" not in fmt.dialogue(turns, "yes") and "<|end|>" not in fmt.dialogue(
        turns, "yes"
    )
    assert (
        len(tokenizer)
        == vocab_before
        == json.loads((path / "config.json").read_text())["vocab_size"]
    )


def test_models_pairwise_makes_keep_the_pairwise_template(tmp_path):
    from rlhf.ml.tiny import make_tiny_policy

    _, tokenizer = make_tiny_policy(tmp_path / "tiny")
    assert template_decide(tmp_path / "tiny").name == PAIRWISE
    fmt = chat_for(_tokenizer(tmp_path / "tiny"))
    assert fmt.name == PAIRWISE and fmt.prompt(DIALOGUES[0]).endswith("<|assistant|>\n")
    assert tokenizer.convert_tokens_to_ids("<|end|>") in fmt.stop_token_ids


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sampled_ids_are_the_ids_scored_and_trained_on(family, family_dirs):
    """No drift: what a policy was prompted with and wrote, decoded and re-rendered for
    reward scoring, reward training and fine-tuning, is the same token ids."""
    import torch
    from transformers import AutoModelForCausalLM

    from modeling.ml.training.data import encode_texts
    from rlhf.ml.generation.base import SamplingParams
    from rlhf.ml.generation.local import decode_responses, sample_tokens
    from rlhf.ml.rejection_sampling.sft import IGNORE_INDEX, build_sft_batch

    path = family_dirs[family]
    tokenizer = _tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    fmt = chat_for(tokenizer)
    eot = tokenizer.convert_tokens_to_ids(fmt.end_of_turn)
    k = 16
    sampled = sample_tokens(
        model,
        tokenizer,
        [fmt.prompt(d) for d in DIALOGUES],
        SamplingParams(temperature=1.0, max_new_tokens=24, num_samples=k, seed=0),
    )
    texts = decode_responses(tokenizer, sampled)
    width = sampled.prompt_width
    ended_on_eot = 0
    for row, text in enumerate(texts):
        turns = DIALOGUES[row // k]
        prompt_mask = sampled.attention_mask[row, :width].bool()
        prompt_ids = sampled.sequences[row, :width][prompt_mask].tolist()
        wrote = sampled.sequences[row, width:][sampled.response_mask[row].bool()].tolist()
        if family == "qwen2":  # byte-level BPE: a random model's pieces need not be canonical
            wrote = tokenizer(
                tokenizer.decode(wrote, skip_special_tokens=True).strip(), add_special_tokens=False
            )["input_ids"] + wrote[-1:] * bool(wrote and wrote[-1] in fmt.stop_token_ids)
        p, r = fmt.encode_dialogue(turns, text)
        assert p == prompt_ids
        if wrote and wrote[-1] == eot:
            ended_on_eot += 1
            assert r == wrote, (
                tokenizer.convert_ids_to_tokens(r),
                tokenizer.convert_ids_to_tokens(wrote),
            )
        else:  # cut at the length cap or ended on another EOS: the turn is closed as the template closes it
            content = wrote[:-1] if wrote and wrote[-1] in fmt.stop_token_ids else wrote
            assert r == [*content, eot]
        # reward scoring and reward training read the same ids ...
        assert encode_texts(tokenizer, [fmt.dialogue(turns, text)], 10**6)[0] == p + r
        # ... and rejection-sampling fine-tuning trains on them, the loss on the response only
        batch = build_sft_batch(tokenizer, [(turns, text)], 10**6)
        assert batch["input_ids"][0].tolist() == p + r
        assert batch["labels"][0].tolist() == [IGNORE_INDEX] * len(p) + r
    assert ended_on_eot > 0
    assert not torch.isin(
        sampled.sequences[:, width:][sampled.response_mask.bool()],
        torch.tensor(sorted(set(tokenizer.added_tokens_decoder) - set(fmt.stop_token_ids))),
    ).any()  # never a role marker inside a response


# --- registration: the page, the command, and what they refuse ------------------------


@pytest.mark.django_db
def test_register_a_family_folder_records_its_template(family_dirs, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    model = services.model_register(name="llama-tiny", path=str(family_dirs["llama"]))
    assert model.status == ModelVersion.Status.READY and model.path == str(family_dirs["llama"])
    assert model.config["chat_template"] == MODEL
    assert "own chat template" in model.config["chat_template_reason"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make, field, says",
    [
        (lambda p: p, "path", "is not a folder on the server"),
        (lambda p: (p.mkdir(), p)[1], "path", "no config.json"),
        (
            lambda p: (p.mkdir(), (p / "config.json").write_text("{oops"), p)[2],
            "path",
            "not valid JSON",
        ),
        (make_plain_model, "template", "--template pairwise"),
    ],
    ids=["missing", "no-config", "bad-json", "no-template"],
)
def test_bad_folders_are_refused_by_field_and_nothing_is_registered(
    make, field, says, tmp_path, settings
):
    settings.MODELS_DIR = tmp_path / "models"
    folder = make(tmp_path / "folder")
    with pytest.raises(ValidationError) as refused:
        services.model_register(name="mine", path=str(folder))
    assert says in " ".join(refused.value.message_dict[field])
    assert not ModelVersion.objects.exists()
    assert not settings.MODELS_DIR.exists() or not any(settings.MODELS_DIR.iterdir())


@pytest.mark.django_db
def test_an_encoder_cannot_be_registered_as_a_policy(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertModel"]})
    )
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(ValidationError) as refused:
        services.model_register(name="bert", path=str(folder), kind="policy")
    assert "cannot be a policy" in " ".join(refused.value.message_dict["path"])
    with pytest.raises(ValidationError) as refused:
        services.model_register(name="bert", path=str(folder), template="pairwise")
    assert "template" in refused.value.message_dict
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_pairwise_template_chosen_explicitly_adds_no_tokens_and_samples(tmp_path, settings):
    from rlhf.ml.generation.base import SamplingParams
    from rlhf.ml.generation.local import LocalGenerator

    settings.MODELS_DIR = tmp_path / "models"
    plain = make_plain_model(tmp_path / "plain")
    before = sorted(p.name for p in plain.iterdir())
    model = services.model_register(name="plain", path=str(plain), template="pairwise")
    assert model.path == str(settings.MODELS_DIR / "plain") and model.config["source"] == str(plain)
    assert (
        model.config["chat_template"] == PAIRWISE
        and "plain text" in model.config["chat_template_reason"]
    )
    assert sorted(p.name for p in plain.iterdir()) == before  # the user's folder is untouched
    generator = LocalGenerator.load(model.path)
    fmt = chat_for(generator.tokenizer)
    assert fmt.name == PAIRWISE and len(generator.tokenizer) == generator.model.config.vocab_size
    assert fmt.prompt(DIALOGUES[0]) == "<|user|>\nhow do i boil an egg<|end|>\n<|assistant|>\n"
    result = generator.generate(DIALOGUES, SamplingParams(max_new_tokens=12, num_samples=3, seed=0))
    assert [len(row) for row in result.samples] == [3, 3]
    assert all("<|end|>" not in g.text for row in result.samples for g in row)


@pytest.mark.django_db
def test_the_command_refuses_by_field_and_offers_the_pairwise_template(tmp_path, settings):
    settings.MODELS_DIR = tmp_path / "models"
    plain = make_plain_model(tmp_path / "plain")
    with pytest.raises(CommandError, match=r"template: .*no chat template.*--template pairwise"):
        call_command("pairwise_create_base_model", register=str(plain), name="plain")
    with pytest.raises(CommandError, match=r"path: .*is not a folder"):
        call_command("pairwise_create_base_model", register=str(tmp_path / "nope"), name="nope")
    assert not ModelVersion.objects.exists()
    call_command(
        "pairwise_create_base_model", register=str(plain), name="plain", template="pairwise"
    )
    assert ModelVersion.objects.get().config["chat_template"] == PAIRWISE


@pytest.mark.django_db
def test_the_models_page_registers_and_names_what_is_wrong(client, tmp_path, settings):
    from tests.factories import UserFactory

    settings.MODELS_DIR = tmp_path / "models"
    client.force_login(UserFactory(username="admin", role="admin"))
    plain = make_plain_model(tmp_path / "plain")
    page = client.post("/models/register/", {"name": "plain", "path": str(plain)}, follow=True)
    text = page.content.decode()
    assert "Model not registered: template:" in text and "Use Pairwise&#x27;s template" in text
    assert not ModelVersion.objects.exists()
    page = client.post(
        "/models/register/",
        {"name": "plain", "path": str(plain), "use_pairwise_template": "on"},
        follow=True,
    )
    assert "Registered plain." in page.content.decode()
    assert "Pairwise&#x27;s template (its markers are plain text" in page.content.decode()


def test_a_tokenizer_with_neither_says_so():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))
    )
    with pytest.raises(ChatTemplateError, match="--template pairwise"):
        chat_for(bare)


def test_a_tokenizer_without_pad_never_pads_with_its_end_of_turn():
    """A reward model reads its score at the last non-pad token: padding with the end of turn
    (Llama 3's <|eot_id|>) would read it one token early."""
    from tokenizers import AddedToken, Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from modeling.ml.tokenizer import pad_token_set

    def tokenizer(*specials, **tokens):
        core = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
        core.add_special_tokens([AddedToken(t, special=True) for t in specials])
        return PreTrainedTokenizerFast(tokenizer_object=core, **tokens)

    llama3 = tokenizer("<|eot_id|>", "<|finetune_right_pad_id|>", eos_token="<|eot_id|>")
    pad_token_set(llama3)
    assert llama3.pad_token == "<|finetune_right_pad_id|>"
    llama2 = tokenizer("</s>", eos_token="</s>", unk_token="<unk>")
    pad_token_set(llama2)
    assert llama2.pad_token == "<unk>"
