"""Does an iteration make a better model, by a judge it was not optimised against?

From ../shared/data/hh-rlhf, end to end, timing every phase:
1. imports the three HH files into one frozen batch (as bench/reward_quality.py does);
2. splits the PROMPTS into three disjoint parts by a seeded hash (``--split``): proxy
   training, judge training, evaluation. Nothing of the evaluation part trains anything;
3. creates the base model V0 on the proxy part's dialogues;
4. trains the two proxy reward models (helpfulness, safety; Llama 2 recipes) on the proxy
   part, and the judge reward model on the judge part only (all its pairs);
5. iteration 1: rejection sampling from V0 on proxy-part prompts → V1;
   iteration 2: PPO from V1 → V2; both with the app's default iteration settings
   (``rlhf.settings.IterationSettings``) unless overridden (``--rs-lr`` ...);
6. samples V0, V1, V2 once on the evaluation prompts and reports, for V1 and V2 against V0:
   the proxy-judged and the judge-judged win rate with Wilson 95% intervals, the gap
   (proxy - judge), the mean response length and its empty / cut-off shares, and each
   reward model's accuracy on the evaluation part's pairs (with the length baseline).

Run (a private SQLite database under bench/results/ unless DATABASE_URL is set)::

    .venv/bin/python bench/loop_quality.py --threads 16 --device cuda     # the full run
    .venv/bin/python bench/loop_quality.py --quick --threads 2             # a smoke run

Results: printed, and written to bench/results/loop_quality.json (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
PARTS = ("proxy", "judge", "evaluation")

from bench.reward_quality import hh_frozen_pairs  # noqa: E402 - after sys.path


def _setup_django(device: str, threads: int) -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = (
            ""  # base and reward training pick CUDA when they see it
        )
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    RESULTS.mkdir(parents=True, exist_ok=True)
    db = RESULTS / "loop_quality.sqlite3"
    if "DATABASE_URL" not in os.environ:
        db.unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["HF_HUB_OFFLINE"] = "1"
    import django
    import torch
    from django.core.management import call_command

    torch.set_num_threads(threads)
    django.setup()
    call_command("migrate", verbosity=0)


def _part(key: str, seed: int, split: tuple[float, float, float]) -> str:
    """Which of the three parts a prompt belongs to: a seeded hash of its key."""
    digest = hashlib.sha256(f"loop-quality:{seed}:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < split[0]:
        return "proxy"
    return "judge" if u < split[0] + split[1] else "evaluation"


def _prompts(pairs, limit: int):
    """One PromptExample per distinct dialogue of ``pairs``, in a stable order."""
    from rlhf.ml.prompts import PromptExample

    seen: dict[str, PromptExample] = {}
    for p in pairs:
        turns = tuple(t.as_dict() for t in p.context)
        key = json.dumps(turns)
        tagged = p.category == "safety" or (key in seen and seen[key].safety_tagged)
        seen[key] = PromptExample(turns, tagged)
    return list(seen.values())[:limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (policy, PPO and scoring)")
    ap.add_argument("--split", default="0.45,0.35,0.2", help="proxy,judge,evaluation shares")
    ap.add_argument("--prompts", type=int, default=150, help="proxy-part prompts for RS and PPO")
    ap.add_argument("--eval-prompts", type=int, default=200, help="evaluation prompts")
    ap.add_argument("--pretrain-seconds", type=float, default=None)
    ap.add_argument("--rs-lr", type=float, default=None, help="default: the app's")
    ap.add_argument("--rs-epochs", type=int, default=None)
    ap.add_argument("--rs-samples", type=int, default=None)
    ap.add_argument("--ppo-lr", type=float, default=None)
    ap.add_argument("--ppo-steps", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks the path, not the bar")
    ap.add_argument("--out", default=str(RESULTS / "loop_quality.json"))
    args = ap.parse_args()
    split = tuple(float(x) for x in args.split.split(","))
    if len(split) != 3 or abs(sum(split) - 1) > 1e-6 or min(split) <= 0:
        ap.error("--split takes three positive shares that add up to 1, e.g. 0.45,0.35,0.2")
    _setup_django(args.device, args.threads)

    from modeling.ml.basemodel import base_model_create
    from modeling.ml.chat import render_dialogue
    from modeling.ml.evaluation import ScoredPair, length_diagnostics
    from modeling.ml.recipes import prompt_key, recipe_select
    from modeling.ml.training.config import BaseModelConfig, DataRecipe, RewardTrainingConfig
    from modeling.ml.training.trainer import reward_model_train
    from rlhf.ml.evaluation import compare_by_judge, compare_policies, length_stats
    from rlhf.ml.generation.base import SamplingParams
    from rlhf.ml.generation.local import LocalGenerator, load_tokenizer_and_context
    from rlhf.ml.ppo.trainer import PPOTrainer
    from rlhf.ml.prompt_fit import fit_prompts
    from rlhf.ml.rejection_sampling.run import run_rejection_sampling
    from rlhf.ml.rewards import CombinedReward
    from rlhf.ml.scale import PPO_CEILING, REJECTION_SAMPLING_CEILING, scaled_learning_rate
    from rlhf.ml.scoring import load_score_fn
    from rlhf.settings import IterationSettings

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    data = Path(os.environ.get("PAIRWISE_SHARED_DATA", REPO.parent / "shared" / "data")) / "hh-rlhf"
    pairs = hh_frozen_pairs(data, name="hh-loop")
    parts: dict[str, list] = {name: [] for name in PARTS}
    for p in pairs:
        parts[_part(prompt_key(p), args.seed, split)].append(p)
    timings["import_split_s"] = time.monotonic() - t0
    print({k: len(v) for k, v in parts.items()}, "pairs per part", flush=True)

    defaults = IterationSettings()
    rs_cfg, ppo_cfg = defaults.rejection_sampling, defaults.ppo
    max_new = args.max_new_tokens or defaults.sampling.max_new_tokens
    base_cfg = BaseModelConfig(seed=args.seed)
    rm_cfg = RewardTrainingConfig(seed=args.seed)
    n_prompts, n_eval = args.prompts, args.eval_prompts
    proxy_pairs, judge_pairs, eval_pairs = parts["proxy"], parts["judge"], parts["evaluation"]
    if args.quick:
        base_cfg = replace(
            base_cfg,
            max_steps=10,
            max_seconds=0,
            hidden_size=64,
            intermediate_size=172,
            num_hidden_layers=1,
            vocab_size=1000,
        )
        proxy_pairs = proxy_pairs[:120] + [p for p in proxy_pairs if p.category == "safety"][:60]
        judge_pairs, eval_pairs = judge_pairs[:120], eval_pairs[:60]
        n_prompts, n_eval = min(n_prompts, 8), min(n_eval, 12)
        rs_cfg = replace(rs_cfg, num_samples=2)
        ppo_cfg = replace(ppo_cfg, steps=2, rollout_batch_size=4, mini_batch_size=2)
        max_new = min(max_new, 16)
    if args.pretrain_seconds is not None:
        base_cfg = replace(base_cfg, max_seconds=args.pretrain_seconds)
    rs_over = {
        k: v
        for k, v in (
            ("learning_rate", args.rs_lr),
            ("epochs", args.rs_epochs),
            ("num_samples", args.rs_samples),
        )
        if v is not None
    }
    ppo_over = {
        k: v
        for k, v in (("learning_rate", args.ppo_lr), ("steps", args.ppo_steps))
        if v is not None
    }
    rs_cfg = replace(rs_cfg, max_new_tokens=max_new, seed=args.seed, **rs_over)
    ppo_cfg = replace(ppo_cfg, max_new_tokens=max_new, seed=args.seed, **ppo_over)

    out = RESULTS / "loop_quality_models"
    t = time.monotonic()
    texts = [render_dialogue(p.context, r) for p in proxy_pairs for r in (p.chosen, p.rejected)]
    base = base_model_create(texts=texts, output_dir=out / "V0", config=base_cfg)
    timings["base_model_s"] = time.monotonic() - t
    print(f"V0: {base}", flush=True)

    def train_rm(name: str, train_pairs) -> dict:
        t = time.monotonic()
        res = reward_model_train(
            checkpoint=out / "V0",
            train_pairs=train_pairs,
            eval_pairs=eval_pairs,
            output_dir=out / name,
            work_dir=out / f"work-{name}",
            config=rm_cfg,
        )
        timings[f"{name}_s"] = time.monotonic() - t
        d = length_diagnostics(
            [
                ScoredPair(
                    c,
                    r,
                    p.strength or "",
                    p.category,
                    chosen_length=len(p.chosen.split()),
                    rejected_length=len(p.rejected.split()),
                    turns=sum(x.role == "user" for x in p.context),
                )
                for p, (c, r) in zip(eval_pairs, res.eval_rewards, strict=True)
            ]
        )
        summary = {
            "train_pairs": len(train_pairs),
            "steps": res.steps,
            **{
                k: d.get(k)
                for k in (
                    "n",
                    "accuracy",
                    "length_baseline_accuracy",
                    "reward_length_correlation",
                    "no_better_than_length",
                )
            },
        }
        print(f"{name}: {summary}", flush=True)
        return summary

    rms = {
        "RM-helpfulness": train_rm(
            "RM-helpfulness",
            recipe_select(proxy_pairs, DataRecipe(kind="helpfulness", seed=args.seed)),
        ),
        "RM-safety": train_rm(
            "RM-safety", recipe_select(proxy_pairs, DataRecipe(kind="safety", seed=args.seed))
        ),
        "RM-judge": train_rm("RM-judge", judge_pairs),
    }
    device = args.device
    proxy = CombinedReward(
        load_score_fn(out / "RM-helpfulness", device=device),
        load_score_fn(out / "RM-safety", device=device),
    )
    judge = load_score_fn(out / "RM-judge", device=device)

    tokenizer, context = load_tokenizer_and_context(out / "V0")

    def fit(prompts):
        return fit_prompts(
            prompts, tokenizer, context=context, max_new_tokens=max_new, policy="truncate_left"
        ).prompts

    train_prompts = fit(_prompts(proxy_pairs, n_prompts))
    eval_prompts = fit(_prompts(eval_pairs, n_eval))

    t = time.monotonic()
    v0 = LocalGenerator.load(out / "V0", device=device)
    n_params = sum(p.numel() for p in v0.model.parameters())
    if defaults.scale_learning_rates:  # as the stages do: the paper's rates scaled to the size
        if args.rs_lr is None:
            rs_cfg = replace(
                rs_cfg,
                learning_rate=scaled_learning_rate(
                    rs_cfg.learning_rate, n_params, ceiling=REJECTION_SAMPLING_CEILING
                ),
            )
        if args.ppo_lr is None:
            ppo_cfg = replace(
                ppo_cfg,
                learning_rate=scaled_learning_rate(
                    ppo_cfg.learning_rate, n_params, ceiling=PPO_CEILING
                ),
            )
    print(
        f"V0: {n_params} parameters; RS lr {rs_cfg.learning_rate:g}, PPO lr "
        f"{ppo_cfg.learning_rate:g}",
        flush=True,
    )
    rs = run_rejection_sampling(v0.model, v0.tokenizer, train_prompts, proxy, rs_cfg, out / "V1")
    timings["iteration_1_rejection_sampling_s"] = time.monotonic() - t
    print(f"V1 (rejection sampling): {json.dumps(rs.summary(), default=str)}", flush=True)

    t = time.monotonic()
    trainer = PPOTrainer.from_pretrained(out / "V1", proxy, ppo_cfg, device=device)
    ppo = trainer.train(train_prompts)
    trainer.save(out / "V2")
    timings["iteration_2_ppo_s"] = time.monotonic() - t
    kls = [s.kl for s in ppo.steps]
    print(f"V2 (PPO): final {ppo.final.as_dict()}", flush=True)

    t = time.monotonic()
    params = SamplingParams(temperature=1.0, max_new_tokens=max_new, seed=args.seed)
    samples = {}
    for name in ("V0", "V1", "V2"):
        result = LocalGenerator.load(out / name, device=device).generate(
            [p.turns for p in eval_prompts], params
        )
        samples[name] = (
            [r[0].text for r in result.samples],
            [r[0].finished for r in result.samples],
        )
    versions = {"V0": {"length": length_stats(*samples["V0"]).as_dict()}}
    for name in ("V1", "V2"):
        by_proxy = compare_policies(eval_prompts, samples[name][0], samples["V0"][0], proxy)
        by_judge = compare_by_judge(eval_prompts, samples[name][0], samples["V0"][0], judge)
        versions[name] = {
            "proxy": {
                k: getattr(by_proxy, k)
                for k in ("wins", "ties", "losses", "win_rate", "ci_low", "ci_high")
            },
            "judge": {
                k: by_judge[k] for k in ("wins", "ties", "losses", "win_rate", "ci_low", "ci_high")
            },
            "gap_proxy_minus_judge": by_proxy.win_rate - by_judge["win_rate"],
            "length": length_stats(*samples[name]).as_dict(),
        }
    timings["evaluation_s"] = time.monotonic() - t
    timings["total_s"] = time.monotonic() - t0
    summary = {
        "pairs_per_part": {k: len(v) for k, v in parts.items()},
        "used_pairs": {
            "proxy": len(proxy_pairs),
            "judge": len(judge_pairs),
            "evaluation": len(eval_pairs),
        },
        "prompts": {"train": len(train_prompts), "evaluation": len(eval_prompts)},
        "reward_models_on_evaluation_pairs": rms,
        "rejection_sampling": {
            "config": rs_cfg.__dict__,
            "sft_loss_first": rs.summary()["sft_loss_first"],
            "sft_loss_last": rs.summary()["sft_loss_last"],
        },
        "ppo": {
            "config": ppo_cfg.__dict__,
            "kl_first": kls[0],
            "kl_last": kls[-1],
            "kl_max_abs": max(abs(k) for k in kls),
            "reward_first": ppo.steps[0].reward,
            "reward_last": ppo.final.reward,
        },
        "versions": versions,
        "timings": timings,
        "policy_parameters": n_params,
        "threads": args.threads,
        "device": device,
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
    }
    Path(args.out).write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({"versions": versions, "timings": timings}, indent=2))
    for name in ("V1", "V2"):
        v = versions[name]
        print(
            f"{name} vs V0: proxies {v['proxy']['win_rate']:.1%} [{v['proxy']['ci_low']:.1%}, "
            f"{v['proxy']['ci_high']:.1%}], judge {v['judge']['win_rate']:.1%} "
            f"[{v['judge']['ci_low']:.1%}, {v['judge']['ci_high']:.1%}], mean words "
            f"{v['length']['mean_words']:.1f} (V0 {versions['V0']['length']['mean_words']:.1f})"
        )


if __name__ == "__main__":
    main()
