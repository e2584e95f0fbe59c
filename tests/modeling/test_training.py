"""The Django-free ML core: loss, margins, data, the training loop, resume, loading."""

from __future__ import annotations

import json
import math

import pytest
import torch

from modeling.ml.chat import chat_for
from modeling.ml.training.config import RewardTrainingConfig
from modeling.ml.training.data import EncodedPair, PairCollator, encode_pairs, encode_texts
from modeling.ml.training.losses import ranking_loss_with_margin
from modeling.ml.training.trainer import cosine_schedule, reward_model_train
from tests.modeling.conftest import make_pairs

TINY = dict(batch_size=2, max_length=64, learning_rate=1e-3, checkpoint_every=2, eval_batch_size=4)


def test_ranking_loss_matches_hand_computed_values():
    chosen = torch.tensor([1.0, 0.0, 2.0])
    rejected = torch.tensor([0.0, 0.0, 3.0])
    margins = torch.tensor([0.5, 0.0, 1.0])
    # -log σ(0.5) = 0.474077, -log σ(0) = 0.693147, -log σ(-2) = 2.126928
    expected = (0.474077 + 0.693147 + 2.126928) / 3
    assert ranking_loss_with_margin(chosen, rejected, margins).item() == pytest.approx(
        expected, abs=1e-5
    )
    assert ranking_loss_with_margin(chosen, rejected).item() == pytest.approx(
        (math.log1p(math.exp(-1)) + math.log(2) + math.log1p(math.exp(1))) / 3, abs=1e-6
    )


def test_cosine_schedule_warms_up_and_ends_at_ten_percent():
    total = 100
    assert cosine_schedule(0, total, 0.03, 0.1) == pytest.approx(1 / 3)
    assert cosine_schedule(2, total, 0.03, 0.1) == pytest.approx(1.0)
    assert cosine_schedule(total, total, 0.03, 0.1) == pytest.approx(0.1)


def test_left_truncation_keeps_the_response(tiny_base):
    from transformers import AutoTokenizer

    from annotation.domain import PreferencePair, Role, Turn

    tok = AutoTokenizer.from_pretrained(tiny_base)
    long_context = (Turn(Role.USER, "tell me a story " * 200),)
    pair = PreferencePair(long_context, "The end of the chosen answer.", "No.", "", "helpfulness")
    (enc,) = encode_pairs(tok, [pair], max_length=32, margin="small")
    assert len(enc.chosen_ids) == 32
    tail = tok.decode(enc.chosen_ids)
    assert tail.endswith("The end of the chosen answer.<|end|>")  # closed at the end of turn
    assert encode_texts(tok, ["short"], 32)[0][0] == tok.bos_token_id  # untruncated keeps BOS


def test_collator_stacks_chosen_then_rejected_with_dynamic_padding():
    batch = PairCollator(pad_token_id=0)(
        [EncodedPair([5, 6, 7], [5, 8], 1.0, 0), EncodedPair([9], [9, 9], 0.0, 1)]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [9, 0, 0], [5, 8, 0], [9, 9, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 0]]
    assert batch["margins"].tolist() == [1.0, 0.0]


def test_pairs_share_their_prompt_and_keep_both_responses(tiny_base):
    from transformers import AutoTokenizer

    from annotation.domain import PreferencePair, Role, Turn

    tok = AutoTokenizer.from_pretrained(tiny_base)
    context = (Turn(Role.USER, "tell me a story " * 200),)
    pair = PreferencePair(context, "A careful answer.", "No.", "", "helpfulness")
    (enc,) = encode_pairs(tok, [pair], max_length=48, margin="none")
    assert len(enc.chosen_ids) == 48  # the longer view fills the window
    assert enc.shared > 0 and enc.chosen_ids[: enc.shared] == enc.rejected_ids[: enc.shared]
    assert tok.decode(enc.chosen_ids).endswith("A careful answer.<|end|>")
    assert tok.decode(enc.rejected_ids).endswith("No.<|end|>")
    assert enc.length == len(enc.chosen_ids) + len(enc.rejected_ids) - enc.shared
    # Each view is a left-truncated suffix of its whole text, tokenised whole.
    whole = encode_texts(tok, [chat_for(tok).dialogue(context, pair.rejected)], 10**6)[0]
    assert whole[-len(enc.rejected_ids) :] == enc.rejected_ids
    # A response longer than the window keeps its end and shares nothing.
    huge = PreferencePair(context, "word " * 300, "Fine.", "", "helpfulness")
    (enc,) = encode_pairs(tok, [huge], max_length=32, margin="none")
    assert enc.shared == 0 and len(enc.chosen_ids) == 32


def test_packed_rows_score_exactly_like_separate_rows(tiny_base):
    from transformers import AutoTokenizer

    from modeling.ml.training.trainer import load_reward_model, rewards_of, supports_packing

    tok = AutoTokenizer.from_pretrained(tiny_base)
    torch.manual_seed(0)
    model = load_reward_model(tiny_base, tok).eval()
    assert supports_packing(model)
    pairs = encode_pairs(tok, make_pairs(5), max_length=40, margin="none")
    assert any(p.shared for p in pairs)
    for attn in ("sdpa", "eager"):
        model.config._attn_implementation = attn
        with torch.no_grad():
            separate = rewards_of(model, PairCollator(tok.pad_token_id)(pairs))
            packed = rewards_of(model, PairCollator(tok.pad_token_id, packed=True)(pairs))
        for a, b in zip(separate, packed, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # And the gradients agree: training on packed rows is training on the pairs.
    model.config._attn_implementation = "sdpa"
    grads = []
    for packed in (False, True):
        model.zero_grad()
        rc, rr = rewards_of(model, PairCollator(tok.pad_token_id, packed=packed)(pairs))
        ranking_loss_with_margin(rc, rr).backward()
        grads.append(model.score.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_packed_collator_masks_the_chosen_response_from_the_rejected_one():
    pair = EncodedPair([1, 2, 3, 4], [1, 2, 7], 0.0, 0, shared=2)
    batch = PairCollator(pad_token_id=0, packed=True)(
        [pair, EncodedPair([5, 6], [5, 8], 0.0, 1, shared=1)]
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 7], [5, 6, 8, 0, 0]]
    assert batch["position_ids"].tolist()[0] == [0, 1, 2, 3, 2]
    mask = batch["attention_mask"][0, 0].int().tolist()
    assert mask[4] == [1, 1, 0, 0, 1]  # the rejected token sees the prompt and itself
    assert mask[3] == [1, 1, 1, 1, 0]  # the chosen response never sees the rejected one
    assert batch["chosen_index"].tolist() == [3, 1] and batch["rejected_index"].tolist() == [4, 2]
    assert batch["attention_mask"][1, 0, 3].int().tolist() == [0, 0, 0, 1, 0]  # padding: itself


def test_one_step_changes_the_weights(tiny_base, tmp_path):
    from safetensors.torch import load_file

    before = load_file(tiny_base / "model.safetensors")
    result = reward_model_train(
        checkpoint=tiny_base,
        train_pairs=make_pairs(2),
        output_dir=tmp_path / "rm",
        work_dir=tmp_path / "work",
        config=RewardTrainingConfig(**TINY),
    )
    assert result.steps == 1
    after = load_file(tmp_path / "rm" / "model.safetensors")
    key = next(k for k in after if k.endswith("layers.0.self_attn.q_proj.weight"))
    assert not torch.equal(before[key], after[key])
    assert "score.weight" in after and after["score.weight"].shape == (1, 32)
    meta = json.loads((tmp_path / "rm" / "pairwise.json").read_text())
    assert meta["kind"] == "reward_model" and meta["max_length"] == 64
    assert not (tmp_path / "rm.partial").exists()


class _Killed(Exception):
    pass


def test_resume_after_kill_ends_with_the_same_number_of_steps(tiny_base, tmp_path):
    pairs = make_pairs(10)
    config = RewardTrainingConfig(**TINY)
    uninterrupted = reward_model_train(
        checkpoint=tiny_base,
        train_pairs=pairs,
        output_dir=tmp_path / "a",
        work_dir=tmp_path / "wa",
        config=config,
    )

    def die_at_step_3(progress):
        if progress.step == 3:
            raise _Killed  # after the checkpoint written at step 2

    with pytest.raises(_Killed):
        reward_model_train(
            checkpoint=tiny_base,
            train_pairs=pairs,
            output_dir=tmp_path / "b",
            work_dir=tmp_path / "wb",
            config=config,
            progress=die_at_step_3,
        )
    assert (tmp_path / "wb" / "checkpoint.pt").exists()
    assert not (tmp_path / "b").exists()  # nothing half-written where the model goes
    steps_seen = []
    resumed = reward_model_train(
        checkpoint=tiny_base,
        train_pairs=pairs,
        output_dir=tmp_path / "b",
        work_dir=tmp_path / "wb",
        config=config,
        progress=lambda p: steps_seen.append(p.step),
    )
    assert resumed.resumed_from_step == 2
    assert resumed.steps == uninterrupted.steps == 5
    assert steps_seen == [3, 4, 5]
    assert not (tmp_path / "wb" / "checkpoint.pt").exists()


def test_scorer_matches_training_eval_rewards(tiny_base, tmp_path):
    from modeling.ml.inference import RewardScorer

    pairs = make_pairs(4)
    result = reward_model_train(
        checkpoint=tiny_base,
        train_pairs=pairs,
        eval_pairs=pairs[:2],
        output_dir=tmp_path / "rm",
        work_dir=tmp_path / "w",
        config=RewardTrainingConfig(**TINY),
    )
    scorer = RewardScorer.load(tmp_path / "rm")
    contexts = [[t.as_dict() for t in p.context] for p in pairs[:2]]
    scores = scorer.score(contexts, [p.chosen for p in pairs[:2]], batch_size=1)
    assert scores == pytest.approx([c for c, _ in result.eval_rewards], abs=1e-4)


def test_no_training_pairs_is_a_clear_error(tiny_base, tmp_path):
    with pytest.raises(ValueError, match="no training pairs"):
        reward_model_train(
            checkpoint=tiny_base,
            train_pairs=[],
            output_dir=tmp_path / "rm",
            work_dir=tmp_path / "w",
        )


def test_load_checkpoint_explains_bad_folders(tiny_base, tmp_path):
    import shutil

    from modeling.ml.basemodel import CheckpointError, load_checkpoint

    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path / "empty")
    notlm = tmp_path / "notlm"
    shutil.copytree(tiny_base, notlm)
    cfg = json.loads((notlm / "config.json").read_text())
    (notlm / "config.json").write_text(json.dumps({**cfg, "architectures": ["LlamaModel"]}))
    with pytest.raises(CheckpointError, match="not a causal LM"):
        load_checkpoint(notlm)
    # A tokenizer with neither a chat template nor the chat markers: no template to speak.
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    mismatch = tmp_path / "mismatch"
    shutil.copytree(tiny_base, mismatch)
    for f in [*mismatch.glob("tokenizer*"), *mismatch.glob("chat_template*")]:
        f.unlink()
    (mismatch / "special_tokens_map.json").unlink(missing_ok=True)
    plain = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")),
        unk_token="<unk>",
        pad_token="<unk>",
    )
    plain.save_pretrained(mismatch)
    with pytest.raises(CheckpointError, match="no chat template and none of Pairwise's markers"):
        load_checkpoint(mismatch)
    model, tok = load_checkpoint(tiny_base)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA


def test_tokenizer_round_trips(tiny_base):
    from transformers import AutoTokenizer

    from modeling.ml.chat import SPECIAL_TOKENS, render_dialogue

    tok = AutoTokenizer.from_pretrained(tiny_base)
    text = render_dialogue([{"role": "user", "content": "Héllo  there, 42 🙂"}], "Hi!")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    for marker in SPECIAL_TOKENS:
        assert len(tok(marker, add_special_tokens=False)["input_ids"]) == 1


def test_config_validation():
    with pytest.raises(ValueError):
        RewardTrainingConfig(margin="huge")
    with pytest.raises(ValueError, match="unknown"):
        RewardTrainingConfig.from_dict({"lr": 1})
    assert (
        RewardTrainingConfig.from_dict(RewardTrainingConfig().to_dict()) == RewardTrainingConfig()
    )


class _Planted:
    def __reduce__(self):
        return (exec, ("raise SystemExit('planted code ran')",))


def test_a_planted_checkpoint_is_refused_not_run(tmp_path):
    import pickle

    from modeling.ml.training.trainer import _load_checkpoint

    torch.save({"model": {}, "step": 1, "stats": _Planted()}, tmp_path / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        _load_checkpoint(tmp_path / "checkpoint.pt")
