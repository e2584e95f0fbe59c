"""One PPO step's wall time against the sum of the passes it needs, measured separately.

The step (``PPOTrainer.step``) = sampling + reward scoring + policy/value and reference
forwards (experience) + per mini-batch forward/backward/optimizer updates. Each of those
passes is then timed on its own with the same shapes; overhead = step / sum − 1 is what
our bookkeeping (masks, GAE, whitening, the replay buffer, logging) costs.

    .venv/bin/python bench/ppo_step.py                       # made-up Llama, 32 prompts
    .venv/bin/python bench/ppo_step.py --rollout 64 --mini-batch 16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from modeling.ml.chat import render_prompt  # noqa: E402
from rlhf.ml.generation.base import SamplingParams  # noqa: E402
from rlhf.ml.generation.local import sample_tokens  # noqa: E402
from rlhf.ml.ppo.config import PPOConfig  # noqa: E402
from rlhf.ml.ppo.model import gather_logprobs, reference_logprobs  # noqa: E402
from rlhf.ml.ppo.trainer import PPOTrainer  # noqa: E402
from rlhf.ml.prompts import PromptExample  # noqa: E402
from rlhf.ml.tiny import WORDS, make_tiny_policy  # noqa: E402


def reward(contexts, responses, tags):
    return [r.split().count("yes") / 8 for r in responses]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rollout", type=int, default=32)
    parser.add_argument("--mini-batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = make_tiny_policy(hidden=args.hidden, layers=args.layers, context=512)
    prompts = [
        PromptExample(
            (
                {
                    "role": "user",
                    "content": " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(10)),
                },
            )
        )
        for i in range(args.rollout)
    ]
    config = PPOConfig(
        learning_rate=1e-5,
        rollout_batch_size=args.rollout,
        mini_batch_size=args.mini_batch,
        max_new_tokens=args.max_new_tokens,
        seed=0,
    )
    trainer = PPOTrainer(model, tokenizer, reward, config)
    trainer.step(prompts[: args.mini_batch])  # warm-up: allocator, optimizer state
    stats = trainer.step(prompts)

    # The same passes, one at a time.
    policy, ref = trainer.policy, trainer.ref_lm
    params = SamplingParams(temperature=1.0, max_new_tokens=args.max_new_tokens)
    policy.eval()
    sampled, t_gen = timed(
        lambda: sample_tokens(
            policy.lm, tokenizer, [render_prompt(p.turns) for p in prompts], params
        )
    )
    from rlhf.ml.generation.local import decode_responses

    responses = decode_responses(tokenizer, sampled)
    _, t_reward = timed(
        lambda: reward([list(p.turns) for p in prompts], responses, [False] * len(prompts))
    )
    seq, attn, width = sampled.sequences, sampled.attention_mask, sampled.prompt_width
    with torch.no_grad():
        _, t_policy_fwd = timed(lambda: policy(seq, attn, width))
        _, t_ref_fwd = timed(lambda: reference_logprobs(ref, seq, attn, width))
    policy.train()
    t_train = 0.0
    optimizer = trainer.optimizer
    for lo in range(0, len(prompts), args.mini_batch):

        def update(lo=lo):
            logits, values = policy(
                seq[lo : lo + args.mini_batch], attn[lo : lo + args.mini_batch], width
            )
            loss = (
                -gather_logprobs(logits, seq[lo : lo + args.mini_batch, width:]).mean()
                + values.pow(2).mean()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()

        t_train += timed(update)[1]
    passes = {
        "generation": t_gen,
        "reward": t_reward,
        "policy_value_forward": t_policy_fwd,
        "reference_forward": t_ref_fwd,
        "train_forward_backward_step": t_train,
    }
    total = sum(passes.values())
    print(
        json.dumps(
            {
                "model": f"tiny llama hidden={args.hidden} layers={args.layers}",
                "rollout": args.rollout,
                "mini_batch": args.mini_batch,
                "max_new_tokens": args.max_new_tokens,
                "torch_threads": torch.get_num_threads(),
                "step_seconds": round(stats.seconds, 3),
                "step_phases": {k: round(v, 3) for k, v in stats.timings.items()},
                "separate_passes": {k: round(v, 3) for k, v in passes.items()},
                "sum_of_passes": round(total, 3),
                "overhead": f"{(stats.seconds / total - 1) * 100:.1f}%",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
