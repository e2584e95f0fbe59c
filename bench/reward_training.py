"""Reward-model training throughput: our trainer vs TRL's RewardTrainer, one run each.

Same model (a small random-init Llama with a scalar head, from one saved checkpoint), same
pairs (HH helpful-base, already tokenised with our left truncation, so TRL filters nothing
out), same sequence length, batch size, learning rate, schedule, thread count and hardware.
Reports training pairs/second and held-out accuracy after one epoch for both, scored by the
same evaluation code.

    .venv/bin/python bench/reward_training.py [--train 512] [--eval 256] [--max-length 128]

Writes bench/results/reward_training.json.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_DISABLED", "true")


def load_pairs(n: int):
    from annotation.domain import Category, PreferencePair
    from annotation.importers import parse_file

    path = (
        Path(os.environ.get("PAIRWISE_SHARED_DATA", REPO.parent / "shared" / "data"))
        / "hh-rlhf"
        / "helpful-base"
        / "test.jsonl.gz"
    )
    with gzip.open(path, "rb") as fh:
        head = io.BytesIO(b"".join(fh.readline() for _ in range(n + 50)))
    parsed = parse_file(head, fmt="hh", category="helpfulness", filename=path.name)
    return [
        PreferencePair(
            tuple(r.turns), r.response_a.text, r.response_b.text, "", Category.HELPFULNESS
        )
        for r in parsed.rows
    ][:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=512)
    ap.add_argument("--eval", type=int, default=256)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--base",
        default=None,
        help="start from this checkpoint (e.g. a pretrained base model) instead of a random one",
    )
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from transformers import LlamaForCausalLM
    from trl import RewardConfig, RewardTrainer

    from modeling.ml.basemodel import llama_config
    from modeling.ml.chat import render_dialogue
    from modeling.ml.tokenizer import tokenizer_train
    from modeling.ml.training.config import BaseModelConfig, RewardTrainingConfig
    from modeling.ml.training.data import PairCollator, encode_pairs
    from modeling.ml.training.trainer import (
        cpu_threads,
        load_reward_model,
        reward_model_train,
        score_encoded,
    )

    threads = cpu_threads(args.threads)
    pairs = load_pairs(args.train + args.eval)
    train, held = pairs[: args.train], pairs[args.train :]
    tmp = Path(tempfile.mkdtemp(prefix="rm-bench-"))
    if args.base:
        from modeling.ml.basemodel import load_checkpoint

        base = Path(args.base)
        _, tok = load_checkpoint(base, load_model=False)
    else:
        base = tmp / "base"
        tok = tokenizer_train(
            [render_dialogue(p.context, p.chosen) for p in train], base, vocab_size=2000
        )
        torch.manual_seed(0)
        LlamaForCausalLM(llama_config(BaseModelConfig(), tok)).save_pretrained(base)
    cfg = RewardTrainingConfig(
        batch_size=args.batch_size,
        max_length=args.max_length,
        checkpoint_every=0,
        num_threads=threads,
        margin="none",
    )
    collate = PairCollator(tok.pad_token_id)
    held_enc = encode_pairs(tok, held, max_length=args.max_length, margin="none")

    def accuracy(model) -> float:
        rewards = score_encoded(model, held_enc, collate, 32, torch.device("cpu"))
        return sum(c > r for c, r in rewards) / len(rewards)

    # --- ours
    torch.set_num_threads(threads)
    t = time.monotonic()
    ours = reward_model_train(
        checkpoint=base, train_pairs=train, output_dir=tmp / "ours", work_dir=tmp / "w", config=cfg
    )
    ours_wall = time.monotonic() - t
    ours_acc = accuracy(load_reward_model(tmp / "ours", tok))

    # --- TRL, on the very same token ids
    enc = encode_pairs(tok, train, max_length=args.max_length, margin="none")
    ds = Dataset.from_dict(
        {"chosen_ids": [e.chosen_ids for e in enc], "rejected_ids": [e.rejected_ids for e in enc]}
    )
    torch.manual_seed(cfg.seed)
    model = load_reward_model(base, tok)
    trl_args = RewardConfig(
        output_dir=str(tmp / "trl"),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, round(cfg.warmup_ratio * -(-len(train) // args.batch_size))),
        max_grad_norm=cfg.max_grad_norm,
        max_length=args.max_length,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        seed=cfg.seed,
        disable_tqdm=True,
        adam_beta2=0.95,
        adam_epsilon=1e-5,
        weight_decay=0.0,
    )
    torch.set_num_threads(threads)
    trainer = RewardTrainer(model=model, args=trl_args, train_dataset=ds, processing_class=tok)
    t = time.monotonic()
    out = trainer.train()
    trl_train_s = time.monotonic() - t
    trl_acc = accuracy(trainer.model)

    result = {
        "train_pairs": len(train),
        "held_out_pairs": len(held),
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "threads": threads,
        "load_avg_start_end": os.getloadavg(),
        "base": str(args.base or "random init, default BaseModelConfig"),
        "vocab": len(tok),
        "ours": {
            "pairs_per_second": ours.pairs_per_second,
            "train_seconds": ours.train_seconds,
            "wall_seconds_incl_load": ours_wall,
            "held_out_accuracy": ours_acc,
            "steps": ours.steps,
        },
        # TRL's own train_runtime (its loop only, like ours), conservative; wall includes its setup.
        "trl": {
            "pairs_per_second": len(train) / out.metrics["train_runtime"],
            "wall_train_call_seconds": trl_train_s,
            "train_seconds": out.metrics["train_runtime"],
            "held_out_accuracy": trl_acc,
            "steps": out.global_step,
        },
    }
    result["speedup"] = result["ours"]["pairs_per_second"] / result["trl"]["pairs_per_second"]
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (REPO / "bench" / "results" / "reward_training.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
