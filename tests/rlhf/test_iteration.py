"""The weekly iteration end to end on tiny models: stages, registration, evaluation, the
next batch, resuming after a failure or a dead worker, and the pages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Batch, Comparison
from config.celery import jobs_requeue_stale
from modeling.models import ModelVersion
from rlhf import selectors, services, tasks
from rlhf.models import Iteration, IterationStage, PolicyEvaluation
from tests.factories import UserFactory
from tests.rlhf.conftest import SMALL, frozen_batch

pytestmark = pytest.mark.django_db(transaction=True)


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


def test_two_iterations_end_to_end(rlhf_models):
    week1 = frozen_batch(6, "week-1")
    first = launch(rlhf_models, [week1])
    first.refresh_from_db()
    stages = {s.name: s for s in first.stages.all()}
    assert first.status == Iteration.Status.ACCEPTED, first.error
    assert all(s.status == "done" for s in stages.values()), [
        (s.name, s.error) for s in stages.values()
    ]
    assert first.policy_name == "RLHF-V1" and first.policy_path.endswith("RLHF-V1/ppo")
    assert stages["ppo"].result["started_from"].endswith("RLHF-V1/rejection_sampling")
    assert len(stages["rejection_sampling"].result["curve"]) == 2
    assert {"reward", "kl", "entropy", "value_loss", "clip_fraction"} <= set(
        stages["ppo"].result["steps"][0]
    )
    evaluation = PolicyEvaluation.objects.get(iteration=first)
    assert (
        evaluation.n_prompts == 2
        and 0 <= evaluation.ci_low <= evaluation.win_rate <= evaluation.ci_high <= 1
    )
    # The next batch: two responses per prompt from the new policy, provenance recorded, open.
    nxt = first.next_batch
    assert nxt.status == Batch.Status.OPEN and nxt.iteration == 1
    comparison = (
        Comparison.objects.filter(batch=nxt).select_related("response_a", "response_b").first()
    )
    assert comparison.response_a.model_version == "RLHF-V1"
    assert {
        comparison.response_a.sampling["temperature"],
        comparison.response_b.sampling["temperature"],
    } == {0.7, 1.0}
    assert comparison.response_a.generated_at is not None
    assert selectors.policy_current().name == "RLHF-V1"

    # Week 2: PPO only, from RLHF-V1, against the previous policy for the second response.
    week2 = frozen_batch(4, "week-2")
    second = launch(rlhf_models, [week1, week2], method="ppo", next_batch_versus_previous=True)
    second.refresh_from_db()
    assert second.status == Iteration.Status.ACCEPTED, second.error
    assert second.start_policy_name == "RLHF-V1"
    pair = (
        Comparison.objects.filter(batch=second.next_batch)
        .select_related("response_a", "response_b")
        .first()
    )
    assert (pair.response_a.model_version, pair.response_b.model_version) == ("RLHF-V2", "RLHF-V1")
    rows = selectors.lineage_rows()
    assert [r.name for r in rows if r.kind == "policy"] == ["RLHF-V1", "RLHF-V2"]
    v2 = ModelVersion.objects.get(name="RLHF-V2")
    assert v2.kind == "policy" and v2.parent.name == "RLHF-V1" and v2.metrics["accepted"] is True
    assert sorted(v2.trained_on.values_list("name", flat=True)) == ["week-1", "week-2"]


def test_iteration_trains_both_reward_models_with_the_modeling_app(rlhf_models):
    from modeling import jobs as modeling_jobs

    base = modeling_jobs.checkpoint_register(name="base-tiny", path=str(rlhf_models["base"]))
    iteration = services.iteration_launch(
        batch_ids=[frozen_batch(12, "rm-week").pk],  # fixed name: a deterministic held-out split
        method="rejection_sampling",
        settings_json={
            **SMALL,
            "reward_training": {"batch_size": 4, "max_length": 64, "eval_fraction": 0.25},
        },
    )
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error
    assert iteration.start_policy_name == "base-tiny"
    rms = ModelVersion.objects.filter(kind__startswith="reward").order_by("kind")
    assert [m.name for m in rms] == ["RM-helpfulness-for-RLHF-V1", "RM-safety-for-RLHF-V1"]
    assert all(m.parent == base and m.is_ready for m in rms)
    assert iteration.reward_safety_path == rms[1].path
    assert ModelVersion.objects.get(name="RLHF-V1").parent == base


def test_a_rerun_reward_stage_resumes_the_run_a_dead_worker_left(rlhf_models):
    """The reward-model run a killed worker left RUNNING is taken over (from its checkpoint),
    not trained again under a new name beside it."""
    from modeling import jobs as modeling_jobs
    from modeling import services as modeling_services
    from modeling.models import TrainingRun

    base = modeling_jobs.checkpoint_register(name="base-tiny", path=str(rlhf_models["base"]))
    batch = frozen_batch(12, "rm-week")
    rm_config = {"batch_size": 4, "max_length": 64, "eval_fraction": 0.25}
    left = modeling_services.reward_model_launch(
        kind="helpfulness",
        base_model=base,
        batch_ids=[batch.pk],
        name="RM-helpfulness-for-RLHF-V1",
        config=rm_config,
        enqueue=False,
    )
    TrainingRun.objects.filter(pk=left.pk).update(
        status=TrainingRun.Status.RUNNING,
        attempts=1,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    iteration = services.iteration_launch(
        batch_ids=[batch.pk],
        method="rejection_sampling",
        settings_json={**SMALL, "reward_training": rm_config},
    )
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error
    left.refresh_from_db()
    assert left.status == TrainingRun.Status.SUCCEEDED and left.attempts == 2
    assert not ModelVersion.objects.filter(name__startswith="RM-helpfulness-for-RLHF-V1-").exists()
    assert iteration.reward_helpfulness_path == left.result.path


def test_failed_stage_registers_nothing_and_resume_skips_finished_stages(rlhf_models, tmp_path):
    from rlhf.ml.tiny import make_tiny_policy

    # A policy folder given as the safety reward model: the reward stage must refuse it.
    other = tmp_path / "other-tokenizer-rm"
    make_tiny_policy(other, hidden=32)
    batch = frozen_batch(6)
    iteration = launch(
        rlhf_models, [batch], method="rejection_sampling", reward_safety_path=str(other)
    )
    iteration.refresh_from_db()
    reward_stage = iteration.stages.get(name="reward_models")
    assert iteration.status == Iteration.Status.FAILED
    assert "LlamaForCausalLM, not a reward model" in reward_stage.error
    assert "not a reward model" in iteration.error
    assert iteration.policy_path == "" and selectors.policy_current().name == "base"
    assert not ModelVersion.objects.filter(kind="policy").exists()
    assert iteration.stages.filter(status="pending").count() == 4

    # Fix the folder: a reward model now lives there, on ANOTHER tokenizer than the policy
    # (it scores the policy's decoded text). Resume: it runs from the failed stage on.
    shutil.rmtree(other)
    shutil.copytree(rlhf_models["safety"], other)
    tok_file = other / "tokenizer.json"
    tok_file.write_text(tok_file.read_text().replace('"egg"', '"eggs"'))
    services.iteration_resume(iteration_id=iteration.pk)
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error
    reward_stage = iteration.stages.get(name="reward_models")
    assert reward_stage.attempts == 2
    assert "scores the policy's decoded text" in reward_stage.log
    assert iteration.stages.get(name="rejection_sampling").attempts == 1


def test_stage_interrupted_by_a_dead_worker_reruns_cleanly(
    rlhf_models, django_capture_on_commit_callbacks
):
    iteration = launch(rlhf_models, [frozen_batch(6)], method="rejection_sampling")
    iteration.refresh_from_db()
    rs = iteration.stages.get(name="rejection_sampling")
    # Put the world back as a killed worker leaves it: stage RUNNING, later stages pending,
    # a half-written checkpoint on disk, no policy registered.
    IterationStage.objects.filter(iteration=iteration, order__gte=rs.order).update(
        status="pending", result={}
    )
    IterationStage.objects.filter(pk=rs.pk).update(status="running", heartbeat_at=timezone.now())
    Iteration.objects.filter(pk=iteration.pk).update(
        status="running", policy_path="", policy_name="", next_batch=None
    )
    Batch.objects.filter(name="RLHF-V1 samples").update(status="draft")
    partial = services.policy_dir(1) / "rejection_sampling.partial"
    partial.mkdir(parents=True)
    (partial / "junk").write_text("half a checkpoint")
    tasks.stage_run.delay(rs.pk)  # a duplicate while its worker still beats: left alone
    assert IterationStage.objects.get(pk=rs.pk).attempts == 1
    # Its worker dead (no heartbeat for the stale threshold), the sweep queues it again.
    IterationStage.objects.filter(pk=rs.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        requeued = jobs_requeue_stale()
    assert requeued["iteration stage"] == [rs.pk]
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error
    assert iteration.stages.get(name="rejection_sampling").attempts == 2
    assert not partial.exists()


def test_empty_prompt_set_fails_clearly(rlhf_models):
    # Over-long prompts no longer fail a stage: tests/rlhf/test_prompt_fit.py.
    batch = frozen_batch(1)
    iteration = launch(rlhf_models, [batch], method="ppo")
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert "at least 2 are needed" in iteration.error
    assert iteration.policy_path == ""


def test_pages_need_the_launch_training_permission(client, rlhf_models):
    annotator = UserFactory(username="ann", role="annotator")
    client.force_login(annotator)
    for url in ("/rlhf/", "/rlhf/lineage/"):
        assert client.get(url).status_code == 403
    assert client.post("/rlhf/iterations/launch/", {}).status_code == 403
    client.logout()
    assert client.get("/rlhf/").status_code == 302  # to the login page

    boss = UserFactory(username="boss", role="admin")  # admins hold modeling.launch_training
    client.force_login(boss)
    batch = frozen_batch(6)
    config = {
        **SMALL,
        "reward_helpfulness_path": str(rlhf_models["helpful"]),
        "reward_safety_path": str(rlhf_models["safety"]),
    }
    form = {
        "batches": [batch.pk],
        "method": "rejection_sampling",
        "rs_num_samples": 2,
        "ppo_steps": 1,
        "ppo_kl_coef": 0.01,
        "max_prompts": 8,
        "next_batch_prompts": 3,
        "temperature_a": 0.7,
        "temperature_b": 1.0,
        "accept_min_win_rate": 0,
        "reward_helpfulness_path": config["reward_helpfulness_path"],
        "reward_safety_path": config["reward_safety_path"],
    }
    response = client.post("/rlhf/iterations/launch/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    iteration = Iteration.objects.get()
    page = client.get(response["Location"]).content.decode()
    assert "RLHF-V1" in page and "Rejection sampling" in page and "<svg" in page
    assert (
        "hx-get" not in client.get(f"/rlhf/iterations/{iteration.pk}/stages/").content.decode()
    )  # finished: no polling
    lineage = client.get("/rlhf/lineage/").content.decode()
    assert "RLHF-V1" in lineage and "helpfulness RM" in lineage


def test_importing_the_web_app_does_not_import_torch():
    code = (
        "import django, os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "import config.urls, rlhf.views, rlhf.services, rlhf.selectors, rlhf.tasks, rlhf.stages, rlhf.admin, rlhf.live;"
        "import rlhf.ml.rewards, rlhf.ml.evaluation, rlhf.plots, rlhf.ml.prompts, rlhf.settings;"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_api_lists_and_launches_for_admins_only(client, rlhf_models):
    annotator = UserFactory(username="ann2", role="annotator")
    client.force_login(annotator)
    assert client.get("/api/v1/rlhf/iterations/").status_code == 403
    client.force_login(UserFactory(username="boss2", role="admin"))
    assert (
        client.post(
            "/api/v1/rlhf/iterations/", {"batch_ids": [999]}, content_type="application/json"
        ).status_code
        == 400
    )
    batch = frozen_batch(6)
    body = {
        "batch_ids": [batch.pk],
        "method": "rejection_sampling",
        "settings": {
            **SMALL,
            "reward_helpfulness_path": str(rlhf_models["helpful"]),
            "reward_safety_path": str(rlhf_models["safety"]),
        },
    }
    created = client.post("/api/v1/rlhf/iterations/", body, content_type="application/json")
    assert created.status_code == 201, created.content
    listed = client.get("/api/v1/rlhf/iterations/").json()
    assert listed[0]["name"] == "RLHF-V1" and listed[0]["status"] == "accepted"
    assert listed[0]["evaluation"]["n_prompts"] == 2


def test_management_command_runs_and_resumes_an_iteration(rlhf_models, tmp_path):
    from io import StringIO

    from django.core.management import CommandError, call_command

    batch = frozen_batch(6, "cli-week")
    sets = [f"{k}={json.dumps(v)}" for k, v in SMALL.items()]
    out = StringIO()
    with pytest.raises(CommandError, match="No reward models"):
        call_command(
            "pairwise_iteration",
            "--batches",
            "cli-week",
            "--method",
            "rejection_sampling",
            *[x for s in sets for x in ("--set", s)],
            stdout=out,
        )
    iteration = Iteration.objects.get()
    assert iteration.status == Iteration.Status.FAILED and iteration.policy_path == ""
    config = {
        **iteration.config,
        "reward_helpfulness_path": str(rlhf_models["helpful"]),
        "reward_safety_path": str(rlhf_models["safety"]),
    }
    Iteration.objects.filter(pk=iteration.pk).update(config=config)
    call_command("pairwise_iteration", "--resume", "1", stdout=out)
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED and batch in iteration.batches.all()
    assert "RLHF-V1: Accepted" in out.getvalue()


def test_unreachable_inference_server_fails_the_stage_clearly_and_resumes(rlhf_models):
    """sampling.server_url serves every stage that samples: rejection sampling, the first
    here, fails with the reason; resumed without the server, the iteration completes."""
    iteration = launch(
        rlhf_models,
        [frozen_batch(6)],
        method="rejection_sampling",
        sampling={**SMALL["sampling"], "server_url": "http://127.0.0.1:9/v1"},
    )
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.FAILED
    assert "Cannot reach the inference server at http://127.0.0.1:9" in iteration.error
    assert iteration.stages.get(name="rejection_sampling").status == "failed"
    assert iteration.next_batch is None
    assert selectors.policy_current().name == "base"
    Iteration.objects.filter(pk=iteration.pk).update(
        config={**iteration.config, "sampling": {**iteration.config["sampling"], "server_url": ""}}
    )
    services.iteration_resume(iteration_id=iteration.pk)
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED and iteration.next_batch is not None
    assert iteration.stages.get(name="rejection_sampling").attempts == 2


def test_an_inference_server_samples_every_stage_but_ppo(rlhf_models, completions_server, client):
    """sampling.server_url: rejection sampling (K samples per prompt in one request),
    evaluation and the next batch ask the server for each policy by its registry name; PPO
    samples in the worker; live annotation then asks it for the accepted policy."""
    from rlhf.models import LiveTurn
    from tests.factories import UserFactory
    from tests.rlhf.fake_server import Completions as _Completions

    iteration = launch(
        rlhf_models,
        [frozen_batch(6)],
        sampling={**SMALL["sampling"], "server_url": completions_server + "/v1"},
    )
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error
    asked = [(body["model"], body["n"]) for body in _Completions.seen]
    assert ("base", SMALL["rejection_sampling"]["num_samples"]) in asked  # rejection sampling
    assert {"base", "RLHF-V1"} == {model for model, _ in asked}  # evaluation, next batch
    assert {tuple(body["stop"]) for body in _Completions.seen} == {("<|end|>",)}  # its template
    texts = Comparison.objects.filter(batch=iteration.next_batch).values_list(
        "response_a__text", flat=True
    )
    assert texts and all(t.startswith("answer ") for t in texts)
    _Completions.seen.clear()
    client.force_login(UserFactory(username="live", role="annotator"))
    client.post("/rlhf/live/start/", {"prompt": "tell me about egg"})
    assert LiveTurn.objects.get().status == LiveTurn.Status.READY
    assert {body["model"] for body in _Completions.seen} == {"RLHF-V1"}
