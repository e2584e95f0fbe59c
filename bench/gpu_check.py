"""GPU check: does the training and sampling code use a CUDA card well? (< 8 min on one H200)

Builds a ~150M-parameter Llama from a config (random weights: speed, not quality, is
measured) with a word-level tokenizer carrying Pairwise's chat template, and times the
project's own code paths, each after a warm-up:

1. **reward training** (``modeling.ml.training.trainer.reward_model_train``): bf16 mixed
   precision through accelerate, packed pairs (prompt once, both responses, block mask) on
   PyTorch SDPA; pairs/s, tokens/s and model FLOPs utilisation (MFU);
2. **LoRA PPO steps** (``rlhf.ml.ppo.trainer.PPOTrainer`` with ``LoraConfig``, bf16 weights,
   gradient checkpointing), rewarded by the reward model of step 1: time per step by phase
   (generation, reward, forward, train), the reference as the policy with adapters off;
3. **batched generation** (``rlhf.ml.generation.local.LocalGenerator``): K samples per prompt
   in one ``generate`` call with the KV cache; generated tokens/s.

MFU = model FLOPs per second / the card's dense bf16 peak (H100 SXM/H200 989 TFLOPS, H100
PCIe 756, A100 312; others: not reported). Model FLOPs per token: 6N (training) or 2N
(forward) for N non-embedding parameters, plus attention 12·L·d·T (4·L·d·T forward) for a
row of T tokens (PaLM, appendix B). On several GPUs the reward training also runs under
``accelerate launch`` on all of them (what docs/reward-models.md promises).

Run::

    .venv/bin/python bench/gpu_check.py            # CUDA; prints a report, writes bench/results/gpu_check.json
    .venv/bin/python bench/gpu_check.py --dry      # the same code on CPU with a tiny config, seconds (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"

# Dense bf16 tensor-core peaks in TFLOPS (vendor data sheets, without sparsity), matched
# against torch.cuda.get_device_name() in order: the first substring found wins.
PEAK_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM / HBM3
    ("A100", 312.0),
)


@dataclass(frozen=True)
class Size:
    """One run's sizes: the full check on a GPU, or the dry run on CPU."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    context: int
    pairs: int
    rm_batch: int
    prompt_words: int
    response_words: int
    ppo_steps: int
    rollout: int
    mini_batch: int
    ppo_new_tokens: int
    gen_prompts: int
    gen_samples: int
    gen_new_tokens: int


FULL = Size(
    hidden=1024,
    layers=12,
    heads=16,
    kv_heads=8,
    intermediate=2816,
    context=2048,
    pairs=4096,
    rm_batch=32,
    prompt_words=384,
    response_words=256,
    ppo_steps=4,
    rollout=64,
    mini_batch=16,
    ppo_new_tokens=128,
    gen_prompts=128,
    gen_samples=4,
    gen_new_tokens=256,
)
DRY = Size(
    hidden=64,
    layers=2,
    heads=4,
    kv_heads=2,
    intermediate=128,
    context=256,
    pairs=24,
    rm_batch=8,
    prompt_words=24,
    response_words=12,
    ppo_steps=2,
    rollout=4,
    mini_batch=2,
    ppo_new_tokens=8,
    gen_prompts=4,
    gen_samples=2,
    gen_new_tokens=8,
)


def peak_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak, by name (None: unknown card, or a CPU)."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def non_embedding_parameters(model) -> int:
    embeddings = {id(p) for m in (model.get_input_embeddings(),) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embeddings)


def training_flops(n_params: int, layers: int, hidden: int, row_lengths: list[int]) -> float:
    """6N per token plus causal attention 12·L·d·T per token of a row of T tokens."""
    return sum(6 * n_params * t + 12 * layers * hidden * t * t for t in row_lengths)


def forward_flops(n_params: int, layers: int, hidden: int, row_lengths: list[int]) -> float:
    return training_flops(n_params, layers, hidden, row_lengths) / 3  # no backward pass


def _words(rng: random.Random, n: int) -> str:
    from rlhf.ml.tiny import WORDS

    return " ".join(rng.choice(WORDS) for _ in range(n))


def build_checkpoint(size: Size, folder: Path, seed: int = 0) -> int:
    """A random Llama of ``size`` (SDPA attention) and the tiny tokenizer saved in
    ``folder``; returns its non-embedding parameter count."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlhf.ml.tiny import make_tiny_tokenizer

    tokenizer = make_tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=size.context,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
        architectures=["LlamaForCausalLM"],
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return non_embedding_parameters(model)


def make_pairs(size: Size, n: int, seed: int) -> list:
    from annotation.domain import Category, PreferencePair, Role, Turn

    rng = random.Random(seed)
    return [
        PreferencePair(
            context=(Turn(Role.USER, _words(rng, size.prompt_words)),),
            chosen=_words(rng, size.response_words),
            rejected=_words(rng, size.response_words),
            strength="better",
            category=Category.HELPFULNESS,
        )
        for _ in range(n)
    ]


def reward_training(size: Size, base: Path, out: Path, *, dry: bool) -> dict:
    """Time ``reward_model_train`` (bf16, packed pairs, SDPA) after a short warm-up run."""
    from transformers import AutoTokenizer

    from modeling.ml.training.config import RewardTrainingConfig
    from modeling.ml.training.data import encode_pairs
    from modeling.ml.training.trainer import reward_model_train

    max_length = 2 * size.prompt_words + 2 * size.response_words + 64
    config = RewardTrainingConfig(
        batch_size=size.rm_batch,
        max_length=max_length,
        learning_rate=1e-4,
        pack_pairs=True,
        mixed_precision="no" if dry else "bf16",
        checkpoint_every=0,
        eval_batch_size=size.rm_batch,
    )
    pairs = make_pairs(size, size.pairs, seed=1)
    held_out = make_pairs(size, size.rm_batch, seed=2)
    reward_model_train(  # warm-up: kernels, allocator, autotuning
        checkpoint=base,
        train_pairs=pairs[: 2 * size.rm_batch],
        output_dir=out / "rm-warmup",
        work_dir=out / "rm-warmup-work",
        config=config,
    )
    result = reward_model_train(
        checkpoint=base,
        train_pairs=pairs,
        eval_pairs=held_out,
        output_dir=out / "rm",
        work_dir=out / "rm-work",
        config=config,
    )
    encoded = encode_pairs(
        AutoTokenizer.from_pretrained(base), pairs, max_length=max_length, margin=config.margin
    )
    rows = [p.length for p in encoded]
    return {
        "pairs": len(pairs),
        "steps": result.steps,
        "seconds": result.train_seconds,
        "pairs_per_second": result.pairs_per_second,
        "tokens": sum(rows),
        "tokens_per_second": sum(rows) / result.train_seconds,
        "mean_packed_row": sum(rows) / len(rows),
        "rows": rows,
        "precision": "fp32" if dry else "bf16 mixed precision",
    }


def ppo_steps(size: Size, base: Path, reward_dir: Path, *, dry: bool) -> dict:
    """Time LoRA PPO steps (bf16 weights on CUDA, gradient checkpointing) with the reward
    model of ``reward_training`` as the reward."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modeling.ml.inference import RewardScorer
    from modeling.ml.training.config import LoraConfig
    from rlhf.ml.ppo.config import PPOConfig
    from rlhf.ml.ppo.trainer import PPOTrainer
    from rlhf.ml.prompts import PromptExample
    from rlhf.ml.rewards import CombinedReward

    device = "cpu" if dry else "cuda"
    dtype = torch.float32 if dry else torch.bfloat16
    lm = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(device)
    scorer = RewardScorer.load(reward_dir, device=device)
    score = scorer.score  # one bound method for both: CombinedReward then scores once
    reward = CombinedReward(score, score)
    rng = random.Random(3)
    prompts = [
        PromptExample(({"role": "user", "content": _words(rng, size.prompt_words // 2)},))
        for _ in range(size.rollout * 2)
    ]
    config = PPOConfig(
        steps=size.ppo_steps,
        rollout_batch_size=size.rollout,
        mini_batch_size=size.mini_batch,
        max_new_tokens=size.ppo_new_tokens,
        learning_rate=1e-5,
        lora=LoraConfig(rank=16, alpha=32),
        gradient_checkpointing=True,
    )
    trainer = PPOTrainer(lm, AutoTokenizer.from_pretrained(base), reward, config)
    trainable = sum(p.numel() for p in trainer.policy.parameters() if p.requires_grad)
    steps = trainer.train(prompts, steps=size.ppo_steps).steps
    timed = steps[1:] or steps  # the first step warms up
    phases = {k: sum(s.timings[k] for s in timed) / len(timed) for k in timed[0].timings}
    return {
        "steps": len(steps),
        "seconds_per_step": sum(s.seconds for s in timed) / len(timed),
        "phases_seconds": phases,
        "response_length": sum(s.response_length for s in timed) / len(timed),
        "rollout": size.rollout,
        "trainable_parameters": trainable,
        "reference": type(trainer.ref_lm).__name__,
        "kl_last": steps[-1].kl,
    }


def generation(size: Size, base: Path, *, dry: bool) -> dict:
    """Time one batched ``LocalGenerator.generate`` (K samples per prompt) after a warm-up."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf.ml.generation.base import SamplingParams
    from rlhf.ml.generation.local import LocalGenerator

    device = "cpu" if dry else "cuda"
    dtype = torch.float32 if dry else torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(device).eval()
    generator = LocalGenerator(model, AutoTokenizer.from_pretrained(base))
    rng = random.Random(4)
    dialogues = [
        [{"role": "user", "content": _words(rng, size.prompt_words // 2)}]
        for _ in range(size.gen_prompts)
    ]
    params = SamplingParams(
        temperature=1.0,
        max_new_tokens=size.gen_new_tokens,
        num_samples=size.gen_samples,
        seed=0,
    )
    generator.generate(dialogues[:2], params)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    result = generator.generate(dialogues, params)
    return {
        "prompts": len(dialogues),
        "samples_per_prompt": size.gen_samples,
        "max_new_tokens": size.gen_new_tokens,
        "seconds": result.seconds,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "tokens_per_second": result.tokens_per_second,
    }


def multi_gpu_reward_training(base: Path, out: Path, gpus: int) -> dict:
    """The reward-training phase again under ``accelerate launch`` on every GPU."""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(gpus),
        "--mixed_precision",
        "bf16",
        __file__,
        "--phase",
        "reward",
        "--base",
        str(base),
        "--out",
        str(out / f"rm-{gpus}gpu"),
    ]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    report = {"gpus": gpus, "returncode": done.returncode, "seconds": time.monotonic() - started}
    line = [x for x in done.stdout.splitlines() if x.startswith("REWARD ")]
    if line:
        report.update(json.loads(line[-1].removeprefix("REWARD ")))
    else:
        report["stderr_tail"] = done.stderr[-2000:]
    return report


def _mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    return flops / seconds / (peak * 1e12) if peak and seconds > 0 else None


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f} %" if x is not None else "n/a (unknown peak)"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny config: checks the code path")
    ap.add_argument("--phase", choices=("all", "reward"), default="all", help=argparse.SUPPRESS)
    ap.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.phase == "reward":  # one process of `accelerate launch` (multi_gpu_reward_training)
        report = reward_training(FULL, args.base, args.out, dry=False)
        report.pop("rows")
        print("REWARD " + json.dumps(report), flush=True)
        return report

    if not args.dry and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry to check the code path on CPU")
    size = DRY if args.dry else FULL
    device_name = "cpu" if args.dry else torch.cuda.get_device_name(0)
    peak = None if args.dry else peak_tflops(device_name)
    started = time.monotonic()
    report: dict = {"device": device_name, "peak_bf16_tflops": peak, "dry": args.dry}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        base = work / "llama"
        n_params = build_checkpoint(size, base)
        report["model"] = {
            "non_embedding_parameters": n_params,
            "hidden": size.hidden,
            "layers": size.layers,
            "attention": "sdpa",
        }
        print(f"device {device_name}; Llama {n_params / 1e6:.1f} M non-embedding parameters")

        rm = reward_training(size, base, work, dry=args.dry)
        rows = rm.pop("rows")
        rm["mfu"] = _mfu(
            training_flops(n_params, size.layers, size.hidden, rows), rm["seconds"], peak
        )
        report["reward_training"] = rm
        print(
            f"reward training ({rm['precision']}, packed pairs, SDPA): {rm['pairs']} pairs in "
            f"{rm['seconds']:.1f} s = {rm['pairs_per_second']:.1f} pairs/s, "
            f"{rm['tokens_per_second']:,.0f} tokens/s (rows of {rm['mean_packed_row']:.0f}); "
            f"MFU {_pct(rm['mfu'])}",
            flush=True,
        )

        ppo = ppo_steps(size, base, work / "rm", dry=args.dry)
        width = size.prompt_words // 2 + 8 + ppo["response_length"]
        train_rows = [int(width)] * (size.rollout * 1)  # one PPO epoch over the rollout
        # LoRA: the backward computes activation gradients (2N) but almost no weight
        # gradients, so a training token costs ~4N; recomputation (checkpointing) adds 2N.
        train_flops = (4 + 2) / 6 * training_flops(n_params, size.layers, size.hidden, train_rows)
        ppo["train_mfu"] = _mfu(train_flops, ppo["phases_seconds"].get("train", 0.0), peak)
        forward = 2 * forward_flops(n_params, size.layers, size.hidden, train_rows)  # π and π_ref
        ppo["forward_mfu"] = _mfu(forward, ppo["phases_seconds"].get("forward", 0.0), peak)
        report["ppo"] = ppo
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in ppo["phases_seconds"].items())
        print(
            f"LoRA PPO (rank 16, {'fp32' if args.dry else 'bf16'}, gradient checkpointing, "
            f"reference = {ppo['reference']}): "
            f"{ppo['seconds_per_step']:.2f} s/step for {size.rollout} prompts ({phases}); "
            f"train MFU {_pct(ppo['train_mfu'])}, forward MFU {_pct(ppo['forward_mfu'])}",
            flush=True,
        )

        gen = generation(size, base, dry=args.dry)
        gen["mfu"] = _mfu(2 * n_params * gen["completion_tokens"], gen["seconds"], peak)
        report["generation"] = gen
        print(
            f"batched generation: {gen['prompts']} prompts x {gen['samples_per_prompt']} samples, "
            f"{gen['completion_tokens']} tokens in {gen['seconds']:.1f} s = "
            f"{gen['tokens_per_second']:,.0f} tokens/s; MFU {_pct(gen['mfu'])} (decoding is "
            "memory-bound)",
            flush=True,
        )

        gpus = 0 if args.dry else torch.cuda.device_count()
        if gpus > 1:
            report["multi_gpu_reward_training"] = multi_gpu_reward_training(base, work, gpus)
            print(f"reward training on {gpus} GPUs: {report['multi_gpu_reward_training']}")
    report["total_seconds"] = time.monotonic() - started
    print(f"total {report['total_seconds']:.0f} s", flush=True)
    if not args.dry:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "gpu_check.json").write_text(json.dumps(report, indent=2))
    assert all(math.isfinite(v) for v in (rm["seconds"], ppo["seconds_per_step"], gen["seconds"]))
    return report


if __name__ == "__main__":
    main()
