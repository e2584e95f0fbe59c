"""Rejection sampling: best-of-K selection, response-only loss, checkpoint written whole."""

import torch
from transformers import AutoModelForCausalLM

from rlhf.ml.prompts import PromptExample
from rlhf.ml.rejection_sampling.config import RejectionSamplingConfig
from rlhf.ml.rejection_sampling.run import run_rejection_sampling
from rlhf.ml.rejection_sampling.sft import IGNORE_INDEX, build_sft_batch

PROMPTS = [
    PromptExample(({"role": "user", "content": f"tell me about {w}"},))
    for w in ("egg", "water", "time")
]


def yes_reward(contexts, responses, tags):
    return [r.split().count("yes") for r in responses]


def test_loss_covers_response_tokens_only(tiny_policy):
    _, tokenizer = tiny_policy
    batch = build_sft_batch(
        tokenizer, [(PROMPTS[0].turns, "yes yes"), (PROMPTS[1].turns, "no")], 256
    )
    labels, ids = batch["labels"], batch["input_ids"]
    trained = [tokenizer.decode(ids[0][labels[0] != IGNORE_INDEX].tolist())]
    assert trained[0].split() == ["yes", "yes", "<|end|>"]
    assert (labels[1][batch["attention_mask"][1] == 0] == IGNORE_INDEX).all()


def test_run_picks_the_best_sample_records_the_curve_and_saves(tiny_policy, tmp_path):
    model, tokenizer = tiny_policy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = RejectionSamplingConfig(
        num_samples=6, max_new_tokens=8, epochs=1, batch_size=2, learning_rate=1e-3
    )
    stages = []
    result = run_rejection_sampling(
        model,
        tokenizer,
        PROMPTS,
        yes_reward,
        config,
        tmp_path / "rs",
        on_progress=lambda s, f: stages.append((s, f)),
    )
    assert [p.k for p in result.curve] == list(range(1, 7))
    assert all(p.mean_max >= p.mean_median for p in result.curve)
    assert result.curve[-1].mean_max >= result.curve[0].mean_max
    assert all(t.reward >= t.median_reward for t in result.targets)
    assert len(result.sft_losses) == 2 and stages[-1] == ("done", 1.0)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not (tmp_path / "rs.partial").exists()
    AutoModelForCausalLM.from_pretrained(tmp_path / "rs")  # a whole, loadable checkpoint
