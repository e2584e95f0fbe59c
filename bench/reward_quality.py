"""Real-data bar for reward models: from base-model creation to two finished RMs, on HH.

What it does, end to end, timing every phase:
1. imports ../shared/data/hh-rlhf (helpful-base and helpful-rejection-sampled as
   helpfulness, harmless-base as safety) into one batch with
   ``annotation.services.comparisons_import(skip_invalid=True)``, and freezes it;
2. reads the frozen pairs and holds out a seeded share of the prompts (``--eval-fraction``)
   for ALL later steps: the base model, the tokenizer and both RMs never see them;
3. creates the base model (tokenizer + small Llama pretrained on the training dialogues);
4. trains the helpfulness RM and the safety RM with the Llama 2 recipes;
5. reports held-out accuracy on helpful pairs (helpfulness RM) and harmless pairs (safety RM).

Run (a private SQLite database under bench/results/ unless DATABASE_URL is set)::

    .venv/bin/python bench/reward_quality.py            # ~25-30 min on 2 CPU cores
    .venv/bin/python bench/reward_quality.py --quick    # a 2-minute smoke run

Results: printed, and written to bench/results/reward_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"


def _setup_django() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    db = RESULTS / "reward_quality.sqlite3"
    if "DATABASE_URL" not in os.environ:
        db.unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["HF_HUB_OFFLINE"] = "1"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quick", action="store_true", help="tiny budgets: checks the path, not the bar"
    )
    ap.add_argument("--pretrain-seconds", type=float, default=None)
    args = ap.parse_args()
    _setup_django()

    from annotation import selectors, services
    from annotation.models import Batch
    from modeling.ml.basemodel import base_model_create
    from modeling.ml.chat import render_dialogue
    from modeling.ml.evaluation import ScoredPair, reward_metrics
    from modeling.ml.recipes import held_out_split, recipe_select
    from modeling.ml.training.config import BaseModelConfig, DataRecipe, RewardTrainingConfig
    from modeling.ml.training.trainer import reward_model_train

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    data = Path(os.environ.get("PAIRWISE_SHARED_DATA", REPO.parent / "shared" / "data")) / "hh-rlhf"
    batch = services.batch_create(name=f"hh-bench-{int(time.time())}")
    files = [
        ("helpful-base/test.jsonl.gz", "helpfulness"),
        ("helpful-rejection-sampled/test.jsonl.gz", "helpfulness"),
        ("harmless-base/test-dev.jsonl.gz", "safety"),
    ]
    for name, category in files:
        with open(data / name, "rb") as fh:
            report = services.comparisons_import(
                batch=batch,
                stream=fh,
                fmt="hh",
                filename=name,
                category=category,
                skip_invalid=True,
                source=f"anthropic-hh/{name.split('/')[0]}",
            )
        print(report.summary(), flush=True)
    for status in (Batch.Status.OPEN, Batch.Status.CLOSED, Batch.Status.FROZEN):
        batch = services.batch_transition(batch=batch, to=status)
    pairs = selectors.preference_pairs_frozen(batch_ids=[batch.pk])
    split = held_out_split(pairs, fraction=args.eval_fraction, seed=args.seed)
    timings["import_freeze_s"] = time.monotonic() - t0
    print(
        f"{len(pairs)} pairs; {len(split.train)} train, {len(split.held_out)} held out", flush=True
    )

    base_cfg = BaseModelConfig(seed=args.seed)
    rm_cfg = RewardTrainingConfig(seed=args.seed, eval_fraction=args.eval_fraction)
    train = split.train
    if args.quick:
        base_cfg = BaseModelConfig(
            seed=args.seed,
            max_steps=10,
            max_seconds=0,
            hidden_size=64,
            intermediate_size=172,
            num_hidden_layers=1,
            vocab_size=1000,
        )
        train = train[:100] + [p for p in train if p.category == "safety"][:100]
    if args.pretrain_seconds is not None:
        base_cfg = BaseModelConfig(**{**base_cfg.to_dict(), "max_seconds": args.pretrain_seconds})
    # Pretraining text: the TRAINING dialogues only, each with both of its responses.
    texts = [render_dialogue(p.context, r) for p in train for r in (p.chosen, p.rejected)]
    out = RESULTS / "reward_quality_models"
    t = time.monotonic()
    base = base_model_create(
        texts=texts,
        output_dir=out / "base-v0",
        config=base_cfg,
        progress=lambda s, n, loss: (
            print(f"  pretrain {s}/{n} loss {loss:.3f}", flush=True) if s % 25 == 0 else None
        ),
    )
    timings["base_model_s"] = time.monotonic() - t
    print(f"base model: {base}", flush=True)

    results = {}
    for kind, test_category in (("helpfulness", "helpfulness"), ("safety", "safety")):
        recipe = DataRecipe(kind=kind, seed=args.seed)
        train_pairs = recipe_select(train, recipe)
        eval_pairs = [p for p in split.held_out if p.category == test_category]
        t = time.monotonic()
        res = reward_model_train(
            checkpoint=out / "base-v0",
            train_pairs=train_pairs,
            eval_pairs=eval_pairs,
            output_dir=out / f"RM-{kind}-V1",
            work_dir=out / f"work-{kind}",
            config=rm_cfg,
            progress=lambda p, kind=kind: (
                print(
                    f"  {kind} RM step {p.step}/{p.total_steps} loss {p.loss:.4f} acc {p.accuracy:.3f} "
                    f"eta {p.eta_seconds:.0f}s {p.pairs_per_second:.1f} pairs/s",
                    flush=True,
                )
                if p.step % 20 == 0
                else None
            ),
        )
        timings[f"rm_{kind}_s"] = time.monotonic() - t
        metrics = reward_metrics(
            [
                ScoredPair(c, r, p.strength or "", f"{p.category} · {p.source}")
                for p, (c, r) in zip(eval_pairs, res.eval_rewards, strict=True)
            ]
        )
        results[kind] = {
            "train_pairs": len(train_pairs),
            "held_out_pairs": len(eval_pairs),
            "steps": res.steps,
            "train_accuracy": res.train_accuracy,
            "held_out_accuracy": metrics["accuracy"],
            "per_test_set": {k: v["accuracy"] for k, v in metrics["test_sets"].items()},
            "pairs_per_second": res.pairs_per_second,
        }
        print(
            f"{kind} RM: held-out accuracy {metrics['accuracy']:.3f} on {len(eval_pairs)} pairs",
            flush=True,
        )
    timings["total_s"] = time.monotonic() - t0
    summary = {
        "base_model": base.__dict__,
        "base_config": base_cfg.to_dict(),
        "rm_config": rm_cfg.to_dict(),
        "eval_fraction": args.eval_fraction,
        "seed": args.seed,
        "results": results,
        "timings": timings,
        "cpu_count": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
    }
    (RESULTS / "reward_quality.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({"results": results, "timings": timings}, indent=2))


if __name__ == "__main__":
    main()
