"""The judge: a reward model the policy was not optimised against. Refused when it shares
the proxies' data; recorded with its prompts; the acceptance rule can require it; the
monitor probes with it during PPO; the lineage shows every judge's win rates."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from modeling import selectors as modeling_selectors
from modeling import services as modeling_services
from modeling.models import ModelKind, ModelVersion
from rlhf import selectors, services, stages
from rlhf.judges import JudgeRefused, judge_for_iteration
from rlhf.models import Iteration, JudgedBy, PolicyEvaluation, WinRate
from rlhf.settings import IterationSettings
from tests.rlhf.conftest import SMALL, frozen_batch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def judge(rlhf_models, tmp_path):
    """RM-judge: a tiny reward model trained (as the registry says) on its own batch."""
    from rlhf.ml.scoring import make_tiny_reward_model

    make_tiny_reward_model(tmp_path / "rm-judge", rlhf_models["base"], seed=3)
    model = ModelVersion.objects.create(
        name="RM-judge",
        kind=ModelKind.REWARD_HELPFULNESS,
        status=ModelVersion.Status.READY,
        path=str(tmp_path / "rm-judge"),
    )
    judge_batch = frozen_batch(4, "judge-data")
    model.trained_on.set([judge_batch])
    model.trained_on_hashes = {judge_batch.name: judge_batch.freeze_hash}
    model.save()
    return modeling_services.model_version_set_judge(model=model, is_judge=True)


def launch(models, batches, method="both", **overrides):
    config = {
        **SMALL,
        "reward_helpfulness_path": str(models["helpful"]),
        "reward_safety_path": str(models["safety"]),
        **overrides,
    }
    return services.iteration_launch(
        batch_ids=[b.pk for b in batches], method=method, settings_json=config
    )


def test_only_a_ready_reward_model_can_judge(rlhf_models):
    base = ModelVersion.objects.create(
        name="base-x", kind=ModelKind.BASE, status=ModelVersion.Status.READY
    )
    with pytest.raises(ValidationError, match="Only a ready reward model can judge"):
        modeling_services.model_version_set_judge(model=base, is_judge=True)


def test_a_judge_trained_on_the_proxies_batches_is_refused(rlhf_models, judge, client, admin_user):
    week1 = frozen_batch(6, "week-1")
    judge.trained_on.add(week1)
    with pytest.raises(ValidationError, match=r"RM-judge was trained on the proxy.*week-1"):
        launch(rlhf_models, [week1], evaluation={"judge": "RM-judge"})
    assert not Iteration.objects.exists()
    # The launch form shows the refusal on its judge field.
    client.force_login(admin_user)
    page = client.post(
        "/rlhf/iterations/launch/",
        {
            "batches": [week1.pk],
            "method": "ppo",
            "rs_num_samples": 2,
            "ppo_steps": 1,
            "ppo_kl_coef": 0.01,
            "max_prompts": 8,
            "next_batch_prompts": 2,
            "temperature_a": 0.7,
            "temperature_b": 1.0,
            "accept_min_win_rate": 0,
            "judge": "RM-judge",
            "require_judge": "on",
            "reward_helpfulness_path": str(rlhf_models["helpful"]),
            "reward_safety_path": str(rlhf_models["safety"]),
        },
    )
    assert page.status_code == 400 and "trained on the proxy reward models" in page.content.decode()
    assert not Iteration.objects.exists()
    # Matched by freeze hash too: the judge's record names the data, whatever the batch row.
    judge.trained_on.remove(week1)
    judge.trained_on_hashes = {"renamed-copy": week1.freeze_hash}
    judge.save()
    shared = modeling_selectors.judge_shared_data(judge=judge, batch_ids={week1.pk}, paths=set())
    assert shared == ["renamed-copy"]
    # A proxy itself is no judge.
    itself = modeling_selectors.judge_shared_data(judge=judge, batch_ids=set(), paths={judge.path})
    assert itself[0] == "RM-judge is itself one of the reward models"
    # In the stage: the iteration's proxies were registered as trained on the judge's batch.
    iteration = Iteration.objects.create(
        number=1,
        start_policy_name="base",
        start_policy_path=str(rlhf_models["base"]),
        reward_helpfulness_path=str(rlhf_models["helpful"]),
        reward_safety_path=str(rlhf_models["safety"]),
    )
    iteration.batches.set([week1])
    proxy = ModelVersion.objects.create(
        name="RM-proxy",
        kind=ModelKind.REWARD_HELPFULNESS,
        status=ModelVersion.Status.READY,
        path=str(rlhf_models["helpful"]),
    )
    proxy.trained_on.set(judge.trained_on.all())
    with pytest.raises(JudgeRefused, match="judge-data"):
        judge_for_iteration(iteration, "RM-judge")
    assert judge_for_iteration(iteration, "") is None  # the newest independent judge: none


def test_acceptance_can_require_the_judge(rlhf_models):
    iteration = Iteration(number=3, start_policy_name="RLHF-V2")
    parent = {"proxy": {"win_rate": 0.7}, "judge": {"win_rate": 0.45}}
    judge = ModelVersion(name="RM-judge")
    loose = IterationSettings.from_json({"accept_min_win_rate": 0.5})
    strict = IterationSettings.from_json(
        {"accept_min_win_rate": 0.5, "evaluation": {"require_judge": True}}
    )
    assert stages._acceptance(iteration, loose, parent, judge) == (True, "")
    accepted, why = stages._acceptance(iteration, strict, parent, judge)
    assert not accepted and "won 45.0% against RLHF-V2 by the judge RM-judge" in why
    accepted, why = stages._acceptance(iteration, strict, {"proxy": {"win_rate": 0.7}}, None)
    assert not accepted and "require a judge" in why
    accepted, why = stages._acceptance(iteration, loose, {"proxy": {"win_rate": 0.4}}, judge)
    assert not accepted and "by the proxy reward models" in why


def test_two_iterations_judged_by_proxies_and_judge(rlhf_models, judge, client, admin_user):
    week1 = frozen_batch(8, "week-1")
    first = launch(
        rlhf_models,
        [week1],
        evaluation={"judge": "RM-judge", "probe_every": 1, "probe_prompts": 2},
    )
    first.refresh_from_db()
    assert first.status == Iteration.Status.ACCEPTED, first.error
    ppo = first.stages.get(name="ppo").result
    points = ppo["monitor"]["points"]
    assert [p["step"] for p in points] == [0, 1, 2]
    assert all(p["judge"] is not None and p["sqrt_kl"] >= 0 for p in points)
    assert "flag" in ppo["monitor"] and "note" in ppo
    rs_points = first.stages.get(name="rejection_sampling").result["monitor"]["points"]
    assert [p["step"] for p in rs_points] == [0, 1] and rs_points[1]["judge"] is not None
    # The paper's PPO rate (for 7-70B models) was scaled to the tiny policy's size.
    assert ppo["learning_rate"]["paper"] == 1e-6 < ppo["learning_rate"]["used"] <= 1e-4
    evaluate = first.stages.get(name="evaluate").result
    assert evaluate["judge"] == "RM-judge" and len(evaluate["prompts"]) == 2
    rates = {(w.baseline_name, w.judged_by): w for w in WinRate.objects.filter(iteration=first)}
    assert set(rates) == {("base", JudgedBy.PROXY), ("base", JudgedBy.JUDGE)}
    by_judge = rates["base", JudgedBy.JUDGE]
    assert by_judge.judge_name == "RM-judge" and by_judge.n == 2
    assert by_judge.details["prompts"] == evaluate["prompts"]
    assert by_judge.details["lengths"]["candidate"]["n"] == 2
    assert rates["base", JudgedBy.PROXY].win_rate == PolicyEvaluation.objects.get().win_rate

    # Iteration 2 starts from RLHF-V1: judged against its parent and the first policy.
    second = launch(
        rlhf_models,
        [week1],
        method="rejection_sampling",
        evaluation={"judge": "RM-judge"},
    )
    second.refresh_from_db()
    assert second.status == Iteration.Status.ACCEPTED, second.error
    pairs = set(WinRate.objects.filter(iteration=second).values_list("baseline_name", "judged_by"))
    assert pairs == {
        ("RLHF-V1", "proxy"),
        ("RLHF-V1", "judge"),
        ("base", "proxy"),
        ("base", "judge"),
    }
    progress = selectors.lineage_win_rates()
    assert set(progress["RLHF-V2"]) == {"parent", "first"}
    assert set(progress["RLHF-V2"]["first"]) == {"proxy", "judge"}
    assert progress["RLHF-V1"]["parent"] == progress["RLHF-V1"]["first"]

    client.force_login(admin_user)
    page = client.get("/rlhf/lineage/").content.decode()
    assert 'id="progress"' in page and "RM-judge" in page and "People: vs RLHF-V1" in page
    page = client.get(f"/rlhf/iterations/{second.pk}/").content.decode()
    assert "Judge reward model" in page and "win-rates" in page


def test_learning_rate_scaling_only_replaces_the_papers_value():
    import torch

    from rlhf.ml.ppo.config import PPOConfig
    from rlhf.ml.scale import PPO_CEILING

    model = torch.nn.Linear(700, 10)  # 7,010 parameters
    n_params = sum(p.numel() for p in model.parameters())
    lines = []
    on = IterationSettings.from_json({})

    def scaled(cfg, settings, report):
        return stages._scaled_learning_rate(cfg, n_params, settings, report, ceiling=PPO_CEILING)

    cfg, used = scaled(PPOConfig(), on, lambda m, **k: lines.append(m))
    assert cfg.learning_rate == used["used"] == 1e-4 and used["parameters"] == 7010
    assert "scaled to this policy's 0.0M parameters" in lines[0]
    chosen = PPOConfig(learning_rate=3e-6)
    cfg, _ = scaled(chosen, on, lambda m, **k: None)
    assert cfg.learning_rate == 3e-6  # set by the user: kept
    off = IterationSettings.from_json({"scale_learning_rates": False})
    cfg, _ = scaled(PPOConfig(), off, lambda m, **k: None)
    assert cfg.learning_rate == 1e-6


def test_sequence_kl_of_a_policy_and_its_start(tiny_policy_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf.ml.kl_estimate import response_logprobs, sequence_kl

    model = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    moved = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_dir)
    examples = [([{"role": "user", "content": "hello there"}], "hello answer")] * 2
    assert sequence_kl(model, model, tokenizer, examples) == 0.0
    logprobs = response_logprobs(model, tokenizer, examples)
    assert len(logprobs) == 2 and all(lp < 0 for lp in logprobs)
    with __import__("torch").no_grad():
        for p in moved.parameters():
            p.add_(0.05)
    assert sequence_kl(moved, model, tokenizer, examples) != 0.0
