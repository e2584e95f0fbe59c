"""Over-long prompts: fitted to the context once, before sampling, in every stage that
samples, by keeping the end of the dialogue or leaving the prompt out; counted in the stage
log and on the iteration page; never a failed stage. Tiny models: the context is 256."""

from __future__ import annotations

import pytest

from annotation.models import Comparison, Response
from modeling.ml.chat import chat_for
from rlhf import services
from rlhf.ml.generation import SamplingParams
from rlhf.ml.generation.local import LocalGenerator, load_tokenizer_and_context
from rlhf.ml.prompt_fit import fit_prompts, keep_end
from rlhf.ml.prompts import PromptExample
from rlhf.models import Iteration, IterationStage, LiveTurn
from tests.factories import UserFactory
from tests.rlhf.conftest import SMALL, frozen_batch

CONTEXT = 256


@pytest.fixture
def tokenizer(tiny_policy_dir):
    tokenizer, context = load_tokenizer_and_context(tiny_policy_dir)
    assert context == CONTEXT
    return tokenizer


def n_tokens(tokenizer, turns) -> int:
    """The prompt's ids as the policy is sampled from them (its template, BOS included)."""
    fmt = chat_for(tokenizer)
    return len(fmt.encode([fmt.prompt(turns)])[0])


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


LONG = " ".join(f"egg{i % 7}" for i in range(400)) + " the end"
DIALOGUE = (
    user(LONG),
    assistant("water " * 60),
    user("time " * 40),
    assistant("a short answer"),
    user("and what about the day?"),
)


def test_prompts_that_fit_are_left_alone(tokenizer):
    prompts = [PromptExample((user("hello"),)), PromptExample(DIALOGUE[-2:])]
    fit = fit_prompts(prompts, tokenizer, context=CONTEXT, max_new_tokens=16, policy="skip")
    assert fit.prompts == prompts and fit.kept == [0, 1]
    assert (fit.truncated, fit.skipped, fit.message()) == (0, 0, "")


def test_truncate_left_drops_whole_turns_from_the_start(tokenizer):
    limit = CONTEXT - 16
    assert n_tokens(tokenizer, DIALOGUE) > CONTEXT
    kept = keep_end(DIALOGUE, tokenizer, limit)
    assert kept == DIALOGUE[len(DIALOGUE) - len(kept) :]  # the end, turns whole
    assert n_tokens(tokenizer, kept) <= limit
    assert n_tokens(tokenizer, DIALOGUE[len(DIALOGUE) - len(kept) - 1 :]) > limit  # the longest


def test_truncate_left_cuts_a_single_long_turn_from_the_left(tokenizer):
    prompt = PromptExample((user(LONG),), safety_tagged=True)
    fit = fit_prompts(
        [prompt], tokenizer, context=CONTEXT, max_new_tokens=16, policy="truncate_left"
    )
    (cut,) = fit.prompts
    assert fit.truncated == 1 and fit.skipped == 0 and cut.safety_tagged
    assert n_tokens(tokenizer, cut.turns) <= CONTEXT - 16
    assert cut.turns[0]["content"].endswith("the end") and len(cut.turns[0]["content"]) > 100
    assert fit.longest == n_tokens(tokenizer, prompt.turns)
    assert "kept the end of 1" in fit.message() and "context of 256" in fit.message()


def test_skip_leaves_the_prompt_out_and_says_so(tokenizer):
    prompts = [PromptExample((user("hi"),)), PromptExample(DIALOGUE), PromptExample((user("yo"),))]
    fit = fit_prompts(prompts, tokenizer, context=CONTEXT, max_new_tokens=16, policy="skip")
    assert fit.prompts == [prompts[0], prompts[2]] and fit.kept == [0, 2]
    assert (fit.truncated, fit.skipped) == (0, 1)
    assert fit.message().startswith("1 of 3 prompt(s)") and "left out 1" in fit.message()
    assert fit.as_json()["skipped"] == 1


def test_no_room_for_a_prompt_is_a_settings_error(tokenizer):
    with pytest.raises(ValueError, match="lower sampling.max_new_tokens"):
        fit_prompts([], tokenizer, context=CONTEXT, max_new_tokens=CONTEXT, policy="skip")


def test_fitted_prompts_sample_where_the_originals_could_not(tiny_policy_dir):
    generator = LocalGenerator.load(tiny_policy_dir)
    fit = fit_prompts(
        [PromptExample(DIALOGUE), PromptExample((user(LONG),))],
        generator.tokenizer,
        context=CONTEXT,
        max_new_tokens=24,
        policy="truncate_left",
    )
    params = SamplingParams(max_new_tokens=24, num_samples=2, seed=0)
    result = generator.generate([p.turns for p in fit.prompts], params)
    assert len(result.samples) == 2 and all(len(row) == 2 for row in result.samples)


# --- every stage that samples, end to end ---------------------------------------------------


def long_prompts_batch():
    """A frozen batch of 6 short prompts and 3 longer than the tiny context."""
    from annotation.domain import Role, Turn
    from annotation.importers import ResponseIn
    from annotation.queue import assignments, labels, rules

    batch = frozen_batch(6, "long-week")
    labeller = UserFactory(role="annotator")
    from annotation import services as annotation_services

    staging = annotation_services.batch_create(name="long-staging")
    for i in range(3):
        annotation_services.comparison_create(
            batch=staging,
            turns=[
                Turn(Role.USER, f"{LONG} {i}"),
                Turn(Role.ASSISTANT, "water " * 30),
                Turn(Role.USER, f"and then what happened, part {i}?"),
            ],
            response_a=ResponseIn("yes"),
            response_b=ResponseIn("no"),
            category="helpfulness",
        )
    annotation_services.batch_transition(batch=staging, to="open")
    while (a := assignments.assignment_next(annotator=labeller)) is not None:
        labels.label_submit(
            assignment_id=a.pk, annotator=labeller, data=rules.LabelInput("A", "better")
        )
    Comparison.objects.filter(batch=staging).update(batch=batch)  # join the frozen week
    return batch


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("policy", ["truncate_left", "skip"])
def test_over_long_prompts_never_fail_a_stage_and_are_counted(client, rlhf_models, policy):
    batch = long_prompts_batch()
    iteration = services.iteration_launch(
        batch_ids=[batch.pk],
        method="both",
        settings_json={
            **SMALL,
            "max_prompts": 9,
            "next_batch_prompts": 9,
            "sampling": {"max_new_tokens": 16, "overlong_prompts": policy},
            "reward_helpfulness_path": str(rlhf_models["helpful"]),
            "reward_safety_path": str(rlhf_models["safety"]),
        },
    )
    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.ACCEPTED, iteration.error
    word = "kept the end of 3" if policy == "truncate_left" else "left out 3"
    for name in ("rejection_sampling", "ppo", "evaluate", "next_batch"):
        stage = IterationStage.objects.get(iteration=iteration, name=name)
        fit = stage.result["prompt_fit"]
        assert (fit["truncated"], fit["skipped"]) == (
            (3, 0) if policy == "truncate_left" else (0, 3)
        )
        assert fit["context"] == CONTEXT and fit["longest"] > CONTEXT
        assert "3 of 9 prompt(s)" in stage.log and word in stage.log, name
    client.force_login(UserFactory(username="boss", role="admin"))
    page = client.get(f"/rlhf/iterations/{iteration.pk}/").content.decode()
    assert page.count(word) >= 1 and "exceeded the model&#x27;s context of 256" in page

    sampled = Comparison.objects.filter(batch=iteration.next_batch)
    long_ones = [c for c in sampled if LONG in c.prompt.turns[0]["content"]]
    if policy == "skip":
        assert not long_ones and sampled.exists()
    else:
        # the whole dialogue is stored; the provenance says the policy saw its end
        assert long_ones and all(len(c.prompt.turns) == 3 for c in long_ones)
        flagged = Response.objects.filter(sampling__prompt_truncated_left=True)
        assert flagged.count() == 2 * len(long_ones)


@pytest.mark.django_db(transaction=True)
def test_live_annotation_answers_an_over_long_dialogue(client, rlhf_models):
    annotator = UserFactory(username="live", role="annotator")
    client.force_login(annotator)
    text = " ".join(["egg"] * 600) + " so, what now?"
    assert len(text) < 4000  # within the live prompt's limit, far beyond the context
    response = client.post("/rlhf/live/start/", {"prompt": text})
    assert response.status_code == 302
    turn = LiveTurn.objects.get()
    assert turn.status == LiveTurn.Status.READY, turn.error
    comparison = turn.comparison
    assert comparison.prompt.turns[-1]["content"] == text  # stored whole
    assert comparison.response_a.sampling["prompt_truncated_left"] is True
