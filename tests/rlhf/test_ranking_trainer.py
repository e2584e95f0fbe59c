"""RankingTrainer (RRHF and PRO) on the tiny policy: a toy preference with a known optimum,
resume, LoRA, saving, and bad input."""

from __future__ import annotations

import copy
import random
import subprocess
import sys

import pytest
import torch

from modeling.ml.training.config import LoraConfig
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.prompts import PromptExample
from rlhf.ml.ranked import RankedSamples, rank
from rlhf.ml.ranking.config import PROConfig, RankingConfig, RRHFConfig
from rlhf.ml.ranking.trainer import RankingTrainer
from rlhf.ml.train_state import TrainState

FILLER = ["the", "a", "and", "to", "of", "it", "good", "bad", "sure", "sorry", "time", "day"]
TRAIN_TOPICS = ["egg", "water", "time", "day", "way", "thing", "help", "answer"]
HELD_OUT_TOPICS = ["boil", "minutes", "cold", "hot"]
METRICS = {"step", "total", "loss", "rank_loss", "sft_loss", "rank_accuracy"}
METRICS |= {"reward_best", "reward_mean", "response_length", "seconds"}


def _prompt(topic: str) -> PromptExample:
    return PromptExample(turns=({"role": "user", "content": f"tell me about {topic}"},))


def yes_ranked(topics, *, k: int = 4, seed: int = 0) -> list[RankedSamples]:
    """K three-word answers per prompt; the one with "yes" in it has the highest reward."""
    rng = random.Random(seed)
    responses, rewards = [], []
    for _ in topics:
        texts, scores = [], []
        for j in range(k):
            words = rng.sample(FILLER, 3)
            if j == 0:
                words.insert(rng.randrange(4), "yes")
            texts.append(" ".join(words))
            scores.append(1.0 if j == 0 else -rng.random())
        responses.append(texts)
        rewards.append(scores)
    return rank([_prompt(t) for t in topics], responses, rewards)


def yes_margin(trainer: RankingTrainer, items) -> float:
    """Mean over prompts of p(yes answer) − mean p(other answers), length-normalised."""
    with torch.no_grad():
        logps, _ = trainer.sequence_logps(trainer.encode(items))
    logps = logps.view(len(items), -1)
    return (logps[:, 0] - logps[:, 1:].mean(dim=1)).mean().item()


def token_kl(model, reference, trainer: RankingTrainer, items) -> float:
    """KL(π‖π_0) of the next-token distributions, averaged over the response tokens."""
    batch = trainer.encode(items)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        logp = torch.log_softmax(model(**inputs).logits[:, :-1], dim=-1)
        ref = torch.log_softmax(reference(**inputs).logits[:, :-1], dim=-1)
    kl = (logp.exp() * (logp - ref)).sum(dim=-1)
    mask = batch["response_mask"]
    return ((kl * mask).sum() / mask.sum()).item()


def _fresh(tiny_policy_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_policy_dir), AutoTokenizer.from_pretrained(
        tiny_policy_dir
    )


@pytest.mark.parametrize(
    "config",
    [
        RRHFConfig(learning_rate=3e-3, epochs=3, checkpoint_every=0),
        PROConfig(learning_rate=3e-3, epochs=3, checkpoint_every=0),
        PROConfig(learning_rate=3e-3, epochs=3, checkpoint_every=0, reward_temperature=True),
    ],
    ids=["rrhf", "pro", "pro-reward-temperature"],
)
def test_toy_preference_moves_the_policy_towards_yes_with_bounded_kl(tiny_policy, config):
    model, tokenizer = tiny_policy
    start = copy.deepcopy(model)
    trainer = RankingTrainer(model, tokenizer, config)
    held_out = yes_ranked(HELD_OUT_TOPICS, seed=1)
    before = yes_margin(trainer, held_out)
    seen = []
    history = trainer.train(yes_ranked(TRAIN_TOPICS), on_step=seen.append)
    assert history == seen
    assert [row["step"] for row in history] == list(range(1, 7))
    assert trainer.total_steps(len(TRAIN_TOPICS)) == 6
    assert all(set(row) == METRICS and row["total"] == 6 for row in history)
    assert history[0]["reward_best"] == 1.0 and history[0]["reward_mean"] < 0.5
    assert history[-1]["loss"] < history[0]["loss"]
    # on prompts it never saw, answers with "yes" gain on the others
    after = yes_margin(trainer, held_out)
    assert after > before + 0.05, (before, after)
    assert token_kl(model, start, trainer, held_out) < 0.1


@pytest.mark.parametrize("config_cls", [RRHFConfig, PROConfig])
def test_resume_after_a_kill_ends_with_the_same_steps_and_weights(
    tiny_policy_dir, tmp_path, config_cls
):
    config = config_cls(learning_rate=3e-3, epochs=3, checkpoint_every=2)
    data = yes_ranked(TRAIN_TOPICS)
    whole = RankingTrainer(*_fresh(tiny_policy_dir), config)
    uninterrupted = whole.train(data)

    def kill_at_3(row):
        if row["step"] == 3:
            raise KeyboardInterrupt  # the worker dies after step 3, before saving again

    state = TrainState(tmp_path / "state", every=config.checkpoint_every)
    with pytest.raises(KeyboardInterrupt):
        RankingTrainer(*_fresh(tiny_policy_dir), config).train(data, on_step=kill_at_3, state=state)
    resumed_trainer = RankingTrainer(*_fresh(tiny_policy_dir), config)
    resumed = resumed_trainer.train(data, state=TrainState(tmp_path / "state", every=2))

    assert [row["step"] for row in resumed] == [3, 4, 5, 6]  # from the state saved at step 2
    assert [row["loss"] for row in resumed] == [row["loss"] for row in uninterrupted[2:]]
    want = whole.model.state_dict()
    got = resumed_trainer.model.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[name], got[name]) for name in want)


def test_resume_refuses_a_state_made_for_other_data(tiny_policy_dir, tmp_path):
    config = RRHFConfig(learning_rate=3e-3, checkpoint_every=1, batch_size=2)
    state = TrainState(tmp_path / "state", every=1)
    RankingTrainer(*_fresh(tiny_policy_dir), config).train(yes_ranked(TRAIN_TOPICS), state=state)
    assert state.path.is_file()
    with pytest.raises(ValueError, match="made for other data"):
        RankingTrainer(*_fresh(tiny_policy_dir), config).train(
            yes_ranked(TRAIN_TOPICS[:6]), state=TrainState(tmp_path / "state", every=1)
        )


def test_lora_trains_adapters_only_and_saves_a_merged_policy(tiny_policy_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    config = PROConfig(learning_rate=1e-2, epochs=2, checkpoint_every=0, lora=LoraConfig(rank=4))
    trainer = RankingTrainer.from_pretrained(tiny_policy_dir, config, device="cpu")
    start = {k: v.clone() for k, v in trainer.model.get_base_model().state_dict().items()}
    held_out = yes_ranked(HELD_OUT_TOPICS, seed=1)
    before = yes_margin(trainer, held_out)
    trainer.train(yes_ranked(TRAIN_TOPICS))
    assert yes_margin(trainer, held_out) > before
    # the base weights stayed; only adapters moved
    base = trainer.model.get_base_model().state_dict()
    assert all(torch.equal(base[k], v) for k, v in start.items() if "lora_" not in k)
    out = trainer.save(tmp_path / "policy")
    assert not (tmp_path / "policy.partial").exists()
    saved = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name in saved.state_dict())
    original = AutoModelForCausalLM.from_pretrained(tiny_policy_dir).state_dict()
    assert any(not torch.equal(original[k], v) for k, v in saved.state_dict().items())


def test_save_writes_a_policy_that_scores_like_the_trained_one(tiny_policy_dir, tmp_path):
    config = RRHFConfig(learning_rate=3e-3, checkpoint_every=0)
    trainer = RankingTrainer.from_pretrained(tiny_policy_dir, config, loss="rrhf", device="cpu")
    data = yes_ranked(TRAIN_TOPICS)
    trainer.train(data)
    out = trainer.save(tmp_path / "policy")
    reloaded = RankingTrainer.from_pretrained(out, config, device="cpu")
    assert yes_margin(reloaded, data) == pytest.approx(yes_margin(trainer, data), abs=1e-5)


def test_encode_marks_response_tokens_and_cuts_prompts_on_the_left(tiny_policy):
    model, tokenizer = tiny_policy
    item = yes_ranked(["egg"], k=2)[0]
    trainer = RankingTrainer(model, tokenizer, RRHFConfig(max_length=8))
    from modeling.ml.chat import chat_for

    prompt_ids, response_ids = chat_for(tokenizer).encode_dialogue(item.turns, item.responses[0])
    assert len(prompt_ids) + len(response_ids) > 8  # the prompt must be cut to fit
    batch = trainer.encode([item])
    assert batch["input_ids"].shape[1] <= 8
    row = batch["input_ids"][0].tolist()[: int(batch["attention_mask"][0].sum())]
    assert row[-len(response_ids) :] == response_ids  # the response survives whole
    assert row[: -len(response_ids)] == prompt_ids[-(len(row) - len(response_ids)) :]
    targets = batch["input_ids"][0, 1:][batch["response_mask"][0]].tolist()
    assert targets == response_ids


def _item(rewards, responses=None):
    responses = responses or [f"answer {w}" for w in ["yes", "no", "the", "a"][: len(rewards)]]
    return RankedSamples(_prompt("egg"), tuple(responses), tuple(rewards))


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ([], ValueError, "nothing to train on"),
        ([_item([1.0])], ValueError, "at least 2 per prompt"),
        ([_item([1.0, 0.0]), _item([1.0, 0.5, 0.0])], ValueError, "the same K"),
        ([_item([0.0, 1.0])], ValueError, "not sorted best first"),
        ([_item([1.0, 0.0], ["yes", "no", "a"])], ValueError, "3 responses but 2 rewards"),
        ([_item([1.0, float("nan")])], NonFiniteError, "response 1 of prompt 0 is nan"),
    ],
    ids=["empty", "k-below-2", "ragged-k", "unsorted", "rewards-missing", "nan-reward"],
)
def test_bad_data_is_refused_with_a_clear_error(tiny_policy, data, error, match):
    trainer = RankingTrainer(*tiny_policy, RRHFConfig())
    with pytest.raises(error, match=match):
        trainer.train(data)


def test_a_nan_loss_names_the_step(tiny_policy):
    model, tokenizer = tiny_policy
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    trainer = RankingTrainer(model, tokenizer, PROConfig())
    with pytest.raises(NonFiniteError, match="PRO loss became nan at step 1"):
        trainer.train(yes_ranked(TRAIN_TOPICS))


def test_configs_and_loss_names(tiny_policy):
    assert (RRHFConfig.loss, RRHFConfig().sft_weight, RRHFConfig().learning_rate) == (
        "rrhf",
        1.0,
        2e-5,
    )
    assert (PROConfig.loss, PROConfig().sft_weight, PROConfig().learning_rate) == (
        "pro",
        0.05,
        5e-6,
    )
    assert RRHFConfig(lora={"rank": 8}).lora == LoraConfig(rank=8)
    with pytest.raises(ValueError, match="num_samples must be at least 2"):
        PROConfig(num_samples=1)
    with pytest.raises(ValueError, match="does not match the config"):
        RankingTrainer(*tiny_policy, RRHFConfig(), loss="pro")
    with pytest.raises(ValueError, match="RRHFConfig or a PROConfig"):
        RankingTrainer(*tiny_policy, RankingConfig())


def test_the_configs_import_no_torch():
    code = (
        "import sys; import rlhf.ml.ranking.config; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sequence_logps_match_a_full_forward(tiny_policy):
    model, tokenizer = tiny_policy
    trainer = RankingTrainer(model, tokenizer, RRHFConfig())
    batch = trainer.encode(yes_ranked(TRAIN_TOPICS[:2]))
    with torch.no_grad():
        logps, lengths = trainer.sequence_logps(batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    token = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, batch["input_ids"][:, 1:, None])
    mask = batch["response_mask"]
    want = (token.squeeze(-1) * mask).sum(dim=1) / mask.sum(dim=1)
    assert torch.allclose(logps, want, atol=1e-5)
    assert lengths.tolist() == mask.sum(dim=1).tolist()
    assert (lengths >= 4).all()  # three words, "yes" on the best, and the end-of-turn token


def test_gradient_checkpointing_with_lora_trains_the_adapters(tiny_policy):
    config = RRHFConfig(learning_rate=1e-2, gradient_checkpointing=True, lora=LoraConfig(rank=4))
    trainer = RankingTrainer(*tiny_policy, config)
    adapters = {
        n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad
    }
    assert adapters and all("lora_" in n for n in adapters)
    history = trainer.train(yes_ranked(TRAIN_TOPICS[:4]))
    assert len(history) == 1
    moved = dict(trainer.model.named_parameters())
    assert any(not torch.equal(moved[n], before) for n, before in adapters.items())
