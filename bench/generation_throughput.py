"""Sampling throughput of the local generation backend against a plain generate loop.

K samples for each of P prompts, same model, same sampling settings, one run each:
  (a) ``LocalGenerator.generate``: all prompts × K samples batched into one ``generate``
      call (left padding, KV cache, ``num_return_sequences=K``);
  (b) the plain loop: for each prompt, for each sample, ``model.generate`` on that one row.
Tokens are response tokens up to and including END_OF_TURN, counted the same way for both.

    .venv/bin/python bench/generation_throughput.py                 # K=8, 64 prompts
    .venv/bin/python bench/generation_throughput.py --model var/models/base   # any local checkpoint
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from modeling.ml.chat import END_OF_TURN, render_prompt  # noqa: E402
from rlhf.ml.generation.base import SamplingParams  # noqa: E402
from rlhf.ml.generation.local import LocalGenerator, prepare_tokenizer  # noqa: E402
from rlhf.ml.tiny import WORDS, make_tiny_policy  # noqa: E402


def prompts(n: int) -> list[list[dict]]:
    return [
        [
            {
                "role": "user",
                "content": " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(8 + i % 9)),
            }
        ]
        for i in range(n)
    ]


def plain_loop(model, tokenizer, dialogues, params: SamplingParams) -> tuple[int, float]:
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    tokens = 0
    start = time.perf_counter()
    with torch.no_grad():
        for d in dialogues:
            enc = tokenizer(render_prompt(d), return_tensors="pt", add_special_tokens=False)
            for _ in range(params.num_samples):
                out = model.generate(
                    **enc,
                    do_sample=True,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    top_k=0,
                    max_new_tokens=params.max_new_tokens,
                    eos_token_id=eot,
                    pad_token_id=tokenizer.pad_token_id,
                )
                response = out[0, enc["input_ids"].shape[1] :].tolist()
                tokens += response.index(eot) + 1 if eot in response else len(response)
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="a local checkpoint folder (default: a made-up Llama, see --hidden)"
    )
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        gen = LocalGenerator.load(args.model)
        model, tokenizer = gen.model, gen.tokenizer
    else:
        model, tokenizer = make_tiny_policy(hidden=args.hidden, layers=args.layers, context=512)
        model.eval()
    prepare_tokenizer(tokenizer)
    dialogues = prompts(args.prompts)
    params = SamplingParams(
        temperature=args.temperature, max_new_tokens=args.max_new_tokens, num_samples=args.k, seed=0
    )
    batched = LocalGenerator(model, tokenizer).generate(dialogues, params)
    print(
        f"batched: {batched.completion_tokens} tokens in {batched.seconds:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    torch.manual_seed(0)
    loop_tokens, loop_seconds = plain_loop(model, tokenizer, dialogues, params)
    result = {
        "model": args.model or f"tiny llama hidden={args.hidden} layers={args.layers}",
        "params": sum(p.numel() for p in model.parameters()),
        "prompts": args.prompts,
        "k": args.k,
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": torch.get_num_threads(),
        "device": str(next(model.parameters()).device),
        "batched": {
            "tokens": batched.completion_tokens,
            "seconds": round(batched.seconds, 2),
            "tokens_per_second": round(batched.tokens_per_second, 1),
        },
        "plain_loop": {
            "tokens": loop_tokens,
            "seconds": round(loop_seconds, 2),
            "tokens_per_second": round(loop_tokens / loop_seconds, 1),
        },
    }
    result["speedup"] = round(
        result["batched"]["tokens_per_second"] / result["plain_loop"]["tokens_per_second"], 2
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
