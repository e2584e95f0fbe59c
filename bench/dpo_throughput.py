"""DPO training throughput (pairs/s) of ours against TRL 1.16's ``DPOTrainer``, in one run.

Same model (a small randomly initialised Llama, hidden 256, 4 layers, on a SentencePiece
tokenizer trained here on the pairs' text), same data (HH-RLHF helpful-base pairs whose
prompt + longer response fit ``--max-length`` tokens, so neither trainer truncates), same
β, batch size, learning rate, linear schedule with 10 % warm-up, one epoch, float32 on the
CPU with the same torch threads. TRL runs with its reference log-probs precomputed (its
fastest setting, and one model in memory like ours) and without gradient checkpointing
(its default is on; ours off). Both wall times include the reference pass.

After each run, the held-out implicit-reward accuracy (log π − log π_ref ranks chosen over
rejected) is measured with the same function for both. The model starts untrained, so the
accuracy shows that both learn the same amount from the same pairs, not a useful policy.

Rounds alternate ours / TRL; medians are reported. Run (under 3 minutes on one thread)::

    .venv/bin/python bench/dpo_throughput.py
    .venv/bin/python bench/dpo_throughput.py --rounds 1 --train-pairs 64   # smoke run

Results: printed, and written to bench/results/dpo_throughput-<time>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"

import torch  # noqa: E402

from annotation.importers import parse_hh_dialogue  # noqa: E402
from modeling.ml.chat import chat_for  # noqa: E402
from rlhf.ml.dpo.config import DPOConfig  # noqa: E402
from rlhf.ml.dpo.data import PreferencePair  # noqa: E402
from rlhf.ml.dpo.trainer import DPOTrainer, implicit_reward_accuracy, sequence_logps  # noqa: E402


def hh_pairs(data: Path, limit: int) -> list[PreferencePair]:
    """Pairs from helpful-base: the shared dialogue, the chosen and the rejected reply."""
    pairs = []
    with gzip.open(data / "hh-rlhf" / "helpful-base" / "test.jsonl.gz", "rt") as fh:
        for line in fh:
            row = json.loads(line)
            chosen = parse_hh_dialogue(row["chosen"], "chosen")
            rejected = parse_hh_dialogue(row["rejected"], "rejected")
            if chosen[:-1] != rejected[:-1] or chosen[-1].content == rejected[-1].content:
                continue
            turns = tuple({"role": str(t.role.value), "content": t.content} for t in chosen[:-1])
            pairs.append(PreferencePair(turns, chosen[-1].content, rejected[-1].content))
            if len(pairs) >= limit:
                break
    return pairs


def make_model(folder: Path, texts: list[str]) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from modeling.ml.tokenizer import tokenizer_train

    tokenizer = tokenizer_train(texts, folder, vocab_size=2000)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)


def run_ours(folder: Path, train: list[PreferencePair], args) -> tuple[float, object]:
    config = DPOConfig(
        beta=args.beta,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        warmup_ratio=0.1,
        epochs=1,
    )
    trainer = DPOTrainer.from_pretrained(folder, config, device="cpu")
    start = time.perf_counter()
    trainer.train(train)
    return time.perf_counter() - start, trainer.model


def run_trl(folder: Path, train: list[PreferencePair], args, out: Path) -> tuple[float, object]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer as TRLTrainer

    from modeling.ml.tokenizer import tokenizer_load

    tokenizer = tokenizer_load(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    dataset = Dataset.from_list(
        [
            {
                "prompt": list(p.turns),
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
            }
            for p in train
        ]
    )
    total = math.ceil(len(train) / args.batch_size)
    config = TRLConfig(
        output_dir=str(out),
        beta=args.beta,
        loss_type=["sigmoid"],
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(0.1 * total),
        num_train_epochs=1,
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_length,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=args.batch_size,
        gradient_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        seed=0,
    )
    start = time.perf_counter()
    trainer = TRLTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    return time.perf_counter() - start, trainer.model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-pairs", type=int, default=48)
    parser.add_argument("--held-out", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    data = Path(os.environ.get("PAIRWISE_SHARED_DATA", "/work/shared/data"))
    candidates = hh_pairs(data, 4 * (args.train_pairs + args.held_out))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "llama"
        texts = [chat_for_text(p) for p in candidates]
        make_model(folder, texts)
        from transformers import AutoModelForCausalLM

        from modeling.ml.tokenizer import tokenizer_load

        tokenizer = tokenizer_load(folder)
        fit = [p for p in candidates if fits(tokenizer, p, args.max_length)]
        if len(fit) < args.train_pairs + args.held_out:
            raise SystemExit(f"only {len(fit)} HH pairs fit {args.max_length} tokens")
        train, held = (
            fit[: args.train_pairs],
            fit[args.train_pairs : args.train_pairs + args.held_out],
        )
        start_model = AutoModelForCausalLM.from_pretrained(folder)
        reference = sequence_logps(start_model, tokenizer, held, max_length=args.max_length)
        rounds = []
        for r in range(args.rounds):
            row = {}
            for name in ("ours", "trl"):
                if name == "ours":
                    seconds, model = run_ours(folder, train, args)
                else:
                    seconds, model = run_trl(folder, train, args, Path(tmp) / f"trl-{r}")
                accuracy = implicit_reward_accuracy(
                    model, tokenizer, held, reference, max_length=args.max_length
                )
                row[name] = {
                    "seconds": seconds,
                    "pairs_per_second": len(train) / seconds,
                    "held_out_accuracy": accuracy,
                }
                print(f"round {r + 1} {name}: {row[name]}", flush=True)
            rounds.append(row)
    summary = {
        name: {
            key: statistics.median(r[name][key] for r in rounds)
            for key in ("pairs_per_second", "held_out_accuracy", "seconds")
        }
        for name in ("ours", "trl")
    }
    speedup = summary["ours"]["pairs_per_second"] / summary["trl"]["pairs_per_second"]
    result = {
        "bench": "dpo_throughput",
        "settings": vars(args),
        "model": "Llama hidden 256, 4 layers, SentencePiece BPE 2000, random init, float32 CPU",
        "data": "HH-RLHF helpful-base test pairs that fit max_length",
        "rounds": rounds,
        "median": summary,
        "speedup": speedup,
        "torch": torch.__version__,
        "trl": __import__("trl").__version__,
    }
    print(json.dumps({"median": summary, "speedup": round(speedup, 2)}, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"dpo_throughput-{stamp}.json").write_text(json.dumps(result, indent=2))


def chat_for_text(pair: PreferencePair) -> str:
    return "\n".join([*(t["content"] for t in pair.turns), pair.chosen, pair.rejected])


def fits(tokenizer, pair: PreferencePair, max_length: int) -> bool:
    fmt = chat_for(tokenizer)
    prompt, chosen = fmt.encode_dialogue(pair.turns, pair.chosen)
    _, rejected = fmt.encode_dialogue(pair.turns, pair.rejected)
    return len(prompt) + max(len(chosen), len(rejected)) <= max_length


if __name__ == "__main__":
    main()
