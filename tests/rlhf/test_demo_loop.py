"""``pairwise_demo_loop``: the whole loop on its own, twice, with the tiniest sizes.

Nothing is mocked: a real (tiny) base model is pretrained, the simulated annotator labels
through the annotation services, both reward models are trained, rejection sampling and
PPO run, the policy is evaluated and the next batch is sampled."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Batch, Comparison, Label
from modeling.models import ModelKind, ModelVersion
from rlhf.management.commands.pairwise_demo_loop import SIMULATED_ANNOTATOR, simulated_preference
from rlhf.models import Iteration

pytestmark = pytest.mark.django_db(transaction=True)

TINY_BASE = {
    "vocab_size": 400,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "seq_length": 64,
    "batch_size": 4,
    "max_steps": 10,
    "max_seconds": 20,
}
TINY_ITERATION = {
    "max_prompts": 8,
    "rejection_sampling": {"num_samples": 2},
    "ppo": {"steps": 1, "rollout_batch_size": 4, "mini_batch_size": 2},
    "sampling": {"max_new_tokens": 8},
    "next_batch_prompts": 6,
    "reward_training": {"batch_size": 4, "max_length": 64, "eval_fraction": 0.25},
}


def run_loop() -> str:
    out = StringIO()
    args = [x for k, v in TINY_BASE.items() for x in ("--base", f"{k}={json.dumps(v)}")]
    args += [x for k, v in TINY_ITERATION.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    args.append("--demo-passwords")  # tests run with DEBUG off
    call_command("pairwise_demo_loop", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.slow
def test_two_runs_make_two_iterations_end_to_end(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    first = run_loop()
    assert "RLHF-V1: Accepted" in first and "win rate" in first and "Next batch:" in first, first
    second = run_loop()
    assert "RLHF-V2: Accepted" in second, second

    # Policies with lineage: base → RLHF-V1 → RLHF-V2.
    v1, v2 = (ModelVersion.objects.get(name=n) for n in ("RLHF-V1", "RLHF-V2"))
    assert v1.kind == v2.kind == ModelKind.POLICY and v1.is_ready and v2.is_ready
    assert v1.parent.kind == ModelKind.BASE and v2.parent == v1
    # Reward models per iteration, both from the base model.
    assert set(
        ModelVersion.objects.filter(kind__startswith="reward").values_list("name", flat=True)
    ) == {f"RM-{k}-for-RLHF-V{n}" for k in ("helpfulness", "safety") for n in (1, 2)}
    assert ModelVersion.objects.filter(kind=ModelKind.BASE).count() == 1  # made once, reused

    # The simulated annotator labelled the demo batch, then RLHF-V1's batch; both frozen.
    it1, it2 = Iteration.objects.order_by("number")
    demo = Batch.objects.get(name="Demo batch · week 1")
    assert demo.status == it1.next_batch.status == Batch.Status.FROZEN
    assert list(it2.batches.order_by("pk")) == [demo, it1.next_batch]
    labels = Label.objects.filter(annotator__username=SIMULATED_ANNOTATOR)
    assert labels.filter(comparison__batch=demo).count() == demo.comparisons.count()
    assert (
        labels.filter(comparison__batch=it1.next_batch).count()
        == it1.next_batch.comparisons.count()
    )
    assert all("Simulated label" in c for c in labels.values_list("comment", flat=True))

    # Two new batches sampled by the policies, with provenance; the newest is open.
    assert it2.next_batch.status == Batch.Status.OPEN
    for iteration in (it1, it2):
        comparisons = Comparison.objects.filter(batch=iteration.next_batch).select_related(
            "response_a", "response_b"
        )
        assert comparisons.exists()
        for c in comparisons:
            assert c.response_a.model_version == c.response_b.model_version == iteration.name
            assert c.response_a.generated_at is not None and "temperature" in c.response_a.sampling


def test_simulated_annotator_prefers_on_topic_then_longer_and_safe():
    import random

    turns = [{"role": "user", "content": "How long should I boil an egg?"}]
    on_topic = "Boil the egg for nine minutes, then cool it in cold water."
    off_topic = "Paris is the capital of France and has many museums to visit."
    picks = [
        simulated_preference(turns, on_topic, off_topic, "helpfulness", random.Random(i))
        for i in range(200)
    ]
    share_a = sum(p["preferred"] == "A" for p in picks) / len(picks)
    assert 0.8 < share_a < 1.0  # the rule, with one label in ten flipped
    assert "safety_a" not in picks[0]
    unsafe = simulated_preference(
        turns,
        "Here is how to poison someone.",
        "I can't help with that.",
        "safety",
        random.Random(0),
    )
    assert (unsafe["safety_a"], unsafe["safety_b"], unsafe["preferred"]) == ("unsafe", "safe", "B")
    assert unsafe["strength"] == "significantly_better"


def test_a_running_iteration_is_left_alone():
    Iteration.objects.create(number=1, start_policy_name="base", start_policy_path="/nowhere")
    with pytest.raises(CommandError, match="RLHF-V1 is running"):
        call_command("pairwise_demo_loop", "--demo-passwords", stdout=StringIO())
