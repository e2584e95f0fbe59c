"""Active labelling: does labelling the pairs the reward model is least sure of first beat
labelling them in random order?

Simulated annotators answer with the Anthropic HH label (the oracle: ``chosen`` is
preferred). From a pool of unlabelled helpfulness pairs (../shared/data/hh-rlhf,
helpful-base + helpful-rejection-sampled, 20 % of the prompts held out), two orders pick
which pairs get labelled, both from the same seeded start:

- **random**: the next pairs of a seeded shuffle of the pool (today's queue);
- **uncertainty**: the pairs with the smallest predicted |r_A − r_B| under the reward model
  trained on the labels so far (``modeling.ml.uncertainty.margin_uncertainty``, the score
  the queue's "margin" order uses), retrained from the base model at every step.

At each N in ``--steps`` a reward model is trained from the same base model on the first N
labels of each order (one epoch, the default ``RewardTrainingConfig``) and its held-out
accuracy is reported, per seed and on average. The first step is the same random start for
both orders. Django-free: it reads the files and calls ``modeling.ml`` directly.

Run::

    .venv/bin/python bench/active_labelling.py                 # ~10 min on 2 busy CPU cores
    .venv/bin/python bench/active_labelling.py --quick         # a 1-minute smoke run
    # a bigger run (16 cores): more pool, more steps, more seeds, a longer-trained base
    .venv/bin/python bench/active_labelling.py --pool 0 --steps 250,500,1000,2000 \\
        --seeds 0,1,2 --pretrain-seconds 300 --threads 16

Results: printed, and written to bench/results/active_labelling.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
FILES = ("helpful-base/test.jsonl.gz", "helpful-rejection-sampled/test.jsonl.gz")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="200,400,800", help="labels at each measurement, rising")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated; both orders use each")
    ap.add_argument("--pool", type=int, default=2000, help="unlabelled pairs to pick from (0: all)")
    ap.add_argument("--held-out", type=int, default=0, help="held-out pairs scored (0: all)")
    ap.add_argument("--eval-fraction", type=float, default=0.2)
    ap.add_argument("--pretrain-seconds", type=float, default=90.0)
    ap.add_argument("--base", default="", help="an existing base checkpoint instead of making one")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets: checks the path only")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    steps = [int(s) for s in args.steps.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        steps, seeds, args.pool, args.held_out, args.pretrain_seconds = [40, 80], [0], 200, 100, 5
    if steps != sorted(set(steps)) or steps[0] < 1:
        ap.error("--steps must rise, e.g. 200,400,800")
    run(args, steps, seeds)


def run(args, steps: list[int], seeds: list[int]) -> None:
    from annotation.domain import Category, PreferencePair
    from annotation.importers import parse_hh_row
    from modeling.ml.basemodel import base_model_create
    from modeling.ml.chat import render_dialogue
    from modeling.ml.recipes import held_out_split
    from modeling.ml.training.config import BaseModelConfig, RewardTrainingConfig
    from modeling.ml.training.trainer import reward_model_train
    from modeling.ml.uncertainty import margin_uncertainty

    t0 = time.monotonic()
    data = Path(os.environ.get("PAIRWISE_SHARED_DATA", REPO.parent / "shared" / "data")) / "hh-rlhf"
    pairs: list[PreferencePair] = []
    for name in FILES:
        with gzip.open(data / name, "rt", encoding="utf-8") as fh:
            for line, text in enumerate(fh, 1):
                try:
                    row = parse_hh_row(
                        json.loads(text), line, Category.HELPFULNESS, with_labels=False, source=name
                    )
                except Exception:  # noqa: BLE001 - the import skips invalid rows too
                    continue
                pairs.append(
                    PreferencePair(
                        context=row.turns,
                        chosen=row.response_a.text,  # the oracle: HH's chosen
                        rejected=row.response_b.text,
                        strength="",
                        category=Category.HELPFULNESS,
                        source=name.split("/")[0],
                    )
                )
    split = held_out_split(pairs, fraction=args.eval_fraction, seed=0)
    shuffle = random.Random(1234)
    pool_all, held_out = list(split.train), list(split.held_out)
    shuffle.shuffle(pool_all)
    shuffle.shuffle(held_out)
    pool = pool_all[: args.pool] if args.pool else pool_all
    held_out = held_out[: args.held_out] if args.held_out else held_out
    if steps[-1] > len(pool):
        raise SystemExit(f"--steps goes to {steps[-1]} labels but the pool has {len(pool)}")
    print(
        f"{len(pairs)} HH helpfulness pairs: pool {len(pool)}, held out {len(held_out)}", flush=True
    )

    work = RESULTS / "active_labelling_models"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base_path = Path(args.base) if args.base else work / "base"
    base_info: dict = {"path": str(base_path)}
    if not args.base:
        # Pretraining text: the pool's dialogues (never the held-out ones).
        texts = [render_dialogue(p.context, r) for p in pool_all for r in (p.chosen, p.rejected)]
        cfg = BaseModelConfig(max_seconds=args.pretrain_seconds, num_threads=args.threads)
        if args.quick:
            cfg = BaseModelConfig(
                max_steps=10, hidden_size=64, intermediate_size=172, num_hidden_layers=1,
                vocab_size=1000, num_threads=args.threads,
            )  # fmt: skip
        t = time.monotonic()
        made = base_model_create(texts=texts, output_dir=base_path, config=cfg)
        base_info.update(steps=made.steps, seconds=time.monotonic() - t, config=cfg.to_dict())
        print(f"base model: {made.steps} steps in {base_info['seconds']:.0f} s", flush=True)

    def train(labelled: list[PreferencePair], scored: list[PreferencePair], seed: int, tag: str):
        """A reward model on ``labelled``; its rewards (chosen, rejected) on ``scored``."""
        config = RewardTrainingConfig(seed=seed, num_threads=args.threads)
        result = reward_model_train(
            checkpoint=base_path,
            train_pairs=labelled,
            eval_pairs=scored,
            output_dir=work / f"rm-{tag}",
            work_dir=work / f"work-{tag}",
            config=config,
        )
        shutil.rmtree(work / f"rm-{tag}", ignore_errors=True)
        shutil.rmtree(work / f"work-{tag}", ignore_errors=True)
        return result.eval_rewards

    def accuracy(rewards) -> float:
        return sum(c > r for c, r in rewards) / len(rewards)

    curves: dict[str, dict[int, list[float]]] = {"random": {}, "uncertainty": {}}
    for seed in seeds:
        order = list(range(len(pool)))
        random.Random(seed).shuffle(order)
        start = order[: steps[0]]
        # Random order: the first N of the seeded shuffle.
        for n in steps:
            t = time.monotonic()
            acc = accuracy(train([pool[i] for i in order[:n]], held_out, seed, f"r{seed}-{n}"))
            curves["random"].setdefault(n, []).append(acc)
            print(
                f"seed {seed} random      N={n:5d}: held-out {acc:.3f} ({time.monotonic() - t:.0f} s)",
                flush=True,
            )
        # Uncertainty order: the same start, then the least certain pairs of the rest.
        labelled = list(start)
        for k, n in enumerate(steps):
            t = time.monotonic()
            taken = set(labelled)
            rest = [i for i in range(len(pool)) if i not in taken]
            last = k == len(steps) - 1
            scored = held_out + ([] if last else [pool[i] for i in rest])
            rewards = train([pool[i] for i in labelled], scored, seed, f"u{seed}-{n}")
            acc = accuracy(rewards[: len(held_out)])
            curves["uncertainty"].setdefault(n, []).append(acc)
            print(
                f"seed {seed} uncertainty N={n:5d}: held-out {acc:.3f} ({time.monotonic() - t:.0f} s)",
                flush=True,
            )
            if not last:
                # |r_A − r_B| is symmetric: which response the oracle prefers is not used.
                uncertainty = [margin_uncertainty(a, b) for a, b in rewards[len(held_out) :]]
                ranked = sorted(range(len(rest)), key=lambda j: -uncertainty[j])
                labelled += [rest[j] for j in ranked[: steps[k + 1] - n]]

    table = {
        name: {n: {"mean": statistics.mean(v), "per_seed": v} for n, v in sorted(curve.items())}
        for name, curve in curves.items()
    }
    print("\nheld-out accuracy (mean over seeds)\n   N   random  uncertainty")
    for n in steps:
        print(f"{n:5d}   {table['random'][n]['mean']:.3f}   {table['uncertainty'][n]['mean']:.3f}")
    summary = {
        "steps": steps,
        "seeds": seeds,
        "pool": len(pool),
        "held_out": len(held_out),
        "base": base_info,
        "results": table,
        "wall_seconds": time.monotonic() - t0,
        "cpu_count": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "active_labelling.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wall {summary['wall_seconds']:.0f} s; bench/results/active_labelling.json")


if __name__ == "__main__":
    main()
