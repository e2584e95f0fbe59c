"""bench/gpu_check.py --dry: the GPU check's code (reward training with packed pairs, LoRA
PPO with the reference as the policy without adapters, batched generation) on CPU with a
tiny config, so CI keeps the script working between runs on a GPU."""

from __future__ import annotations

import pytest

from bench import gpu_check


def test_peaks_are_found_by_card_name():
    assert gpu_check.peak_tflops("NVIDIA H200") == 989.0
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_check.peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_flops_formulas():
    # 6N per token plus 12·L·d·T² per row of T tokens; a forward pass is a third of that.
    assert gpu_check.training_flops(1000, 2, 8, [10]) == 6 * 1000 * 10 + 12 * 2 * 8 * 100
    assert gpu_check.forward_flops(1000, 2, 8, [10]) * 3 == gpu_check.training_flops(
        1000, 2, 8, [10]
    )


@pytest.mark.slow
def test_dry_run_goes_through_every_phase(capsys):
    report = gpu_check.main(["--dry"])
    rm, ppo, gen = report["reward_training"], report["ppo"], report["generation"]
    assert rm["pairs"] == gpu_check.DRY.pairs and rm["pairs_per_second"] > 0
    assert rm["tokens"] > rm["pairs"] * gpu_check.DRY.response_words
    assert ppo["steps"] == gpu_check.DRY.ppo_steps and ppo["reference"] == "AdaptersOff"
    assert set(ppo["phases_seconds"]) >= {"generation", "reward", "forward", "train"}
    assert 0 < ppo["trainable_parameters"] < report["model"]["non_embedding_parameters"]
    assert gen["completion_tokens"] > 0 and gen["tokens_per_second"] > 0
    out = capsys.readouterr().out
    for phase in ("reward training", "LoRA PPO", "batched generation", "total"):
        assert phase in out
