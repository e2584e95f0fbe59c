"""The over-optimisation monitor and the "policy did not move" note, on constructed runs."""

from __future__ import annotations

import pytest

from rlhf.ml.monitor import ProbePoint, overoptimisation_flag, policy_did_not_move, probe_point

CONTEXTS = [[{"role": "user", "content": f"question {i}"}] for i in range(4)]
TAGS = [False] * 4


def toy_proxy(contexts, responses, tags):
    """Rewards the token "!!" and, a little, a real answer."""
    return [r.count("!!") + 0.5 * ("answer" in r) for r in responses]


def toy_judge(contexts, responses):
    """Likes a real answer, dislikes "!!"."""
    return [1.0 * ("answer" in r) - 0.4 * r.count("!!") for r in responses]


def constructed_run(shouts_per_step):
    """Step t: the policy answers, then shouts "!!" ``shouts_per_step[t]`` times; the KL
    grows with the steps."""
    points = []
    for step, shouts in enumerate(shouts_per_step):
        answer = "answer" if step > 0 else "hmm"
        responses = [" ".join([answer] + ["!!"] * shouts)] * len(CONTEXTS)
        points.append(
            probe_point(
                step=step,
                kl=0.5 * step,
                contexts=CONTEXTS,
                safety_tagged=TAGS,
                responses=responses,
                proxy=toy_proxy,
                judge=toy_judge,
            )
        )
    return points


def test_flag_fires_when_the_proxy_rewards_a_token_the_judge_dislikes():
    points = constructed_run([0, 0, 1, 3, 6])
    assert [p.proxy for p in points] == [0.0, 0.5, 1.5, 3.5, 6.5]
    assert [p.judge for p in points] == pytest.approx([0.0, 1.0, 0.6, -0.2, -1.4])
    flag = overoptimisation_flag(points)
    assert flag is not None
    assert (flag["peak_step"], flag["last_step"]) == (1, 4)
    assert flag["proxy_change"] == pytest.approx(6.0)
    assert flag["judge_change"] == pytest.approx(-2.4)
    assert "Over-optimisation" in flag["message"]
    assert points[4].sqrt_kl == pytest.approx(2**0.5)


def test_no_flag_when_both_rise_or_without_a_judge():
    assert overoptimisation_flag(constructed_run([0, 0, 0])) is None  # judge peaks last
    no_judge = [ProbePoint(s, 0.1 * s, float(s), None, 3.0) for s in range(4)]
    assert overoptimisation_flag(no_judge) is None
    # A fall within the tolerance does not count.
    wobble = [ProbePoint(0, 0, 0.0, 1.0, 3), ProbePoint(1, 1, 1.0, 0.99, 3)]
    assert overoptimisation_flag(wobble, tolerance=0.05) is None
    assert overoptimisation_flag(wobble) is not None


def test_policy_did_not_move_note():
    # The PPO at lr 1e-6: KL 0.000 ± 0.007 per step.
    note = policy_did_not_move(kls=[0.007, -0.006, 0.001, -0.002])
    assert "the KL to the starting policy averaged 0.0000 nats over 4 steps" in note
    assert "loss did not fall (3.600 → 3.720)" in policy_did_not_move(losses=[3.6, 3.9, 3.72])
    assert policy_did_not_move(kls=[0.0, 0.3], losses=[3.6, 2.1]) == ""


def test_learning_rates_scale_with_the_model():
    from rlhf.ml.scale import scaled_learning_rate

    assert scaled_learning_rate(1e-6, 7_000_000_000, ceiling=1e-4) == pytest.approx(1e-6)
    assert scaled_learning_rate(1e-6, 70_000_000_000, ceiling=1e-4) == pytest.approx(1e-6)
    # 7M parameters: sqrt(1000) ≈ 31.6 times the paper's rate.
    assert scaled_learning_rate(1e-6, 7_000_000, ceiling=1e-4) == pytest.approx(3.162e-5, rel=1e-3)
    assert scaled_learning_rate(2e-5, 800_000, ceiling=1e-3) == pytest.approx(1e-3)
