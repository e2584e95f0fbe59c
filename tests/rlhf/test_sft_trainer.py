"""SFT on demonstrations (rlhf.ml.sft): response-only loss, schedule, resume, save, bad input."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from modeling.ml.chat import chat_for
from modeling.ml.training.config import LoraConfig
from rlhf.ml.ppo.experience import NonFiniteError
from rlhf.ml.sft.config import SFTConfig
from rlhf.ml.sft.trainer import SFTTrainer, lr_multiplier, step_order
from rlhf.ml.train_state import TrainState


def user(text):
    return [{"role": "user", "content": text}]


DEMOS = [
    (user("how do i boil an egg"), "boil it in hot water for ten minutes"),
    (user("is it safe"), "yes it is safe"),
    ([*user("hello"), {"role": "assistant", "content": "hello"}, *user("help")], "yes i can help"),
    (user("what is water"), "water is good"),
    (user("thanks"), "you are good"),
]
FAST = {"learning_rate": 1e-3, "batch_size": 2, "epochs": 2, "seed": 3}


def trainer_for(tiny_policy_dir, **config) -> SFTTrainer:
    return SFTTrainer.from_pretrained(tiny_policy_dir, SFTConfig(**config), device="cpu")


def response_nll(model, tokenizer, demos) -> float:
    """The mean NLL per response token, computed here by hand from the chat template."""
    fmt = chat_for(tokenizer)
    total, count = 0.0, 0
    with torch.no_grad():
        for turns, response in demos:
            prompt_ids, response_ids = fmt.encode_dialogue(turns, response)
            ids = torch.tensor([prompt_ids + response_ids])
            logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            targets = ids[0, 1:]
            picked = logps.gather(-1, targets[:, None]).squeeze(-1)[len(prompt_ids) - 1 :]
            total -= picked.sum().item()
            count += len(response_ids)
    return total / count


def test_first_loss_is_the_nll_of_the_response_tokens_only(tiny_policy_dir):
    trainer = trainer_for(tiny_policy_dir, batch_size=len(DEMOS), epochs=1)
    expected = response_nll(trainer.model, trainer.tokenizer, DEMOS)
    [step] = trainer.train(DEMOS)
    assert step["loss"] == pytest.approx(expected, rel=1e-4)
    responses = sum(len(chat_for(trainer.tokenizer).encode_dialogue(t, r)[1]) for t, r in DEMOS)
    assert step["num_tokens"] == responses  # no prompt token trains


def test_steps_report_the_contract_and_the_loss_falls(tiny_policy_dir):
    trainer = trainer_for(tiny_policy_dir, **{**FAST, "epochs": 6, "learning_rate": 1e-2})
    before = response_nll(trainer.model, trainer.tokenizer, DEMOS)
    seen = []
    steps = trainer.train(DEMOS, on_step=seen.append)
    assert steps == seen and trainer.total_steps(len(DEMOS)) == 18 == len(steps)
    assert [s["step"] for s in steps] == list(range(1, 19))
    for s in steps:
        assert {"step", "total", "loss", "seconds", "learning_rate", "grad_norm"} <= set(s)
        assert s["total"] == 18 and s["seconds"] > 0 and 0 <= s["mean_token_accuracy"] <= 1
    assert steps[-1]["epoch"] == 6
    # cosine from the peak towards 0
    assert steps[0]["learning_rate"] == pytest.approx(1e-2)
    assert steps[-1]["learning_rate"] < 1e-3
    assert response_nll(trainer.model, trainer.tokenizer, DEMOS) < before - 1.5


def test_schedule_and_order_are_pure_functions():
    config = SFTConfig(warmup_ratio=0.25)
    factors = [lr_multiplier(s, 8, config) for s in range(8)]
    assert factors[0] == pytest.approx(1 / 3) and factors[1] == pytest.approx(2 / 3)
    assert factors[2] == 1.0 and factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert lr_multiplier(7, 8, SFTConfig(lr_schedule="constant")) == 1.0
    order = step_order(5, batch_size=2, epochs=2, seed=1)
    assert order == step_order(5, batch_size=2, epochs=2, seed=1)
    assert [len(b) for b in order] == [2, 2, 1, 2, 2, 1]
    assert sorted(i for b in order[:3] for i in b) == list(range(5))
    assert order[:3] != order[3:]  # a fresh shuffle each epoch


def test_a_resumed_run_ends_with_the_same_steps_and_weights(tiny_policy_dir, tmp_path):
    config = {**FAST, "checkpoint_every": 2}
    whole = trainer_for(tiny_policy_dir, **config)
    uninterrupted = whole.train(DEMOS)
    assert len(uninterrupted) == 6

    class Killed(Exception):
        pass

    def kill_at_step_5(stats):
        if stats["step"] == 5:
            raise Killed

    state = TrainState(tmp_path / "state", every=2)
    with pytest.raises(Killed):
        trainer_for(tiny_policy_dir, **config).train(DEMOS, on_step=kill_at_step_5, state=state)
    assert TrainState(tmp_path / "state").path.is_file()
    resumed_trainer = trainer_for(tiny_policy_dir, **config)  # a new worker, base weights
    resumed = resumed_trainer.train(DEMOS, state=TrainState(tmp_path / "state", every=2))
    # the state saved at step 4 (step 5 was reported after it, then killed): 5 and 6 again
    assert [s["step"] for s in resumed] == [5, 6] and resumed[-1]["total"] == 6
    assert [s["loss"] for s in resumed] == [s["loss"] for s in uninterrupted[4:]]
    for (name, a), (_, b) in zip(
        whole.model.named_parameters(), resumed_trainer.model.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name


def test_a_state_saved_for_other_demonstrations_is_refused(tiny_policy_dir, tmp_path):
    state = TrainState(tmp_path / "state", every=1)
    trainer = trainer_for(tiny_policy_dir, **{**FAST, "epochs": 1})
    with pytest.raises(ZeroDivisionError):  # killed reporting step 2, after step 1's save
        trainer.train(DEMOS, on_step=lambda s: 1 / (s["step"] - 2), state=state)
    with pytest.raises(ValueError, match="made for other demonstrations"):
        trainer_for(tiny_policy_dir, **{**FAST, "epochs": 1}).train(DEMOS[:4], state=state)


def test_lora_saves_a_plain_merged_checkpoint(tiny_policy_dir, tmp_path):
    trainer = trainer_for(tiny_policy_dir, **FAST, lora=LoraConfig(rank=4))
    trainer.train(DEMOS)
    out = trainer.save(tmp_path / "sft")
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()
    assert not (tmp_path / "sft.partial").exists()
    saved = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    changed = [
        name
        for (name, a), (_, b) in zip(saved.named_parameters(), base.named_parameters(), strict=True)
        if not torch.equal(a, b)
    ]
    assert changed and all("proj" in name for name in changed)  # only LoRA's targets moved


def test_a_non_finite_loss_names_the_step(tiny_policy_dir):
    trainer = trainer_for(tiny_policy_dir, **FAST)
    with torch.no_grad():
        trainer.model.get_input_embeddings().weight.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="at step 1 of 6"):
        trainer.train(DEMOS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "No demonstrations"),
        ([(user("hi"), "   ")], "Demonstration 0: the response is empty"),
        (
            [DEMOS[0], ([{"role": "assistant", "content": "hi"}], "yes")],
            "Demonstration 1: the dialogue must end with the user's turn",
        ),
        ([([{"role": "robot", "content": "hi"}], "yes")], "Demonstration 0, turn 0"),
        ([("hi", "yes")], "non-empty list of turns"),
    ],
)
def test_bad_demonstrations_are_named(tiny_policy_dir, data, message):
    with pytest.raises(ValueError, match=message):
        trainer_for(tiny_policy_dir, **FAST).train(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_length", 1), ("lr_schedule", "linear"), ("warmup_ratio", 1.0), ("epochs", 0)],
)
def test_config_refuses_bad_values(field, value):
    with pytest.raises(ValueError):
        SFTConfig(**{field: value})
