"""Demonstrations (ideal responses, SFT data): import through every entry point, batches
and their freeze hash, the live page, the SFT selector."""

import gzip
import hashlib
import html
import io
import json

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import importers, selectors, services
from annotation.domain import Role, Turn
from annotation.importers import ImportFileError
from annotation.models import Assignment, Batch, Comparison, Demonstration, Label, Prompt
from annotation.queue import assignments, labels, rules
from rlhf import live
from rlhf.models import LiveSession, LiveTurn
from tests.factories import BatchFactory, UserFactory, make_comparison, native_row

pytestmark = pytest.mark.django_db

HH_ROW = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: Why did the chicken cross the road?",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: No.",
}


def demo(i=0, **over) -> dict:
    row = {
        "id": f"d{i}",
        "turns": [{"role": "user", "content": f"How do I boil an egg? ({i})"}],
        "response": f"Boil it for ten minutes. ({i})",
    }
    row.update(over)
    return row


def jsonl(*rows, bom=False, crlf=False) -> bytes:
    end = "\r\n" if crlf else "\n"
    text = "".join(json.dumps(r) + end for r in rows)
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def do_import(data: bytes, *, batch=None, fmt="native", **kw):
    return services.comparisons_import(
        batch=batch or BatchFactory(), stream=io.BytesIO(data), fmt=fmt, filename="d.jsonl", **kw
    )


# --- import ---------------------------------------------------------------------------


def test_demonstration_rows_import_with_provenance_and_share_the_prompt_table():
    batch = BatchFactory()
    comparison = make_comparison(batch, turns=[Turn(Role.USER, "How do I boil an egg? (0)")])
    rows = [
        demo(0, provenance={"author": "vendor-7"}),
        demo(1, turns=None, dialogue="Plain string dialogue", id=None),
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
            ]
        },
    ]
    del rows[1]["turns"], rows[1]["id"]
    report = do_import(jsonl(*rows), batch=batch)
    assert (report.created, report.demonstrations_created) == (0, 3)
    assert report.summary() == "3 demonstration(s) imported from d.jsonl (3 lines)."
    first, second, third = Demonstration.objects.order_by("id")
    assert first.prompt == comparison.prompt  # the same dialogue is one Prompt row
    assert first.response == "Boil it for ten minutes. (0)" and first.written_by is None
    assert first.source == "d.jsonl" and first.batch == batch
    assert first.provenance == {
        "importer": "native",
        "file": "d.jsonl",
        "line": 1,
        "id": "d0",
        "given": {"author": "vendor-7"},
    }
    assert second.prompt.turns == [{"role": "user", "content": "Plain string dialogue"}]
    assert (
        third.prompt.turns
        == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ]
        and third.response == "Hello."
    )


def test_auto_reads_a_mixed_file_and_the_kind_selector_overrides():
    data = jsonl(native_row(1), demo(1), native_row(2))
    report = do_import(data)
    assert (report.created, report.demonstrations_created) == (2, 1)
    assert "2 comparison(s) and 1 demonstration(s) imported" in report.summary()
    with pytest.raises(ImportFileError) as refused:
        do_import(data, kind="demonstrations")
    assert [(p.line, p.message) for p in refused.value.problems][0] == (
        1,
        "is a comparison (it has two responses), not a demonstration",
    )
    with pytest.raises(ImportFileError) as refused:
        do_import(data, kind="comparisons")
    assert (refused.value.problems[0].line, refused.value.problems[0].field) == (2, "prompt")


def test_hh_chosen_transcripts_as_demonstrations_need_no_category():
    batch = BatchFactory()
    report = do_import(jsonl(HH_ROW), fmt="hh", kind="demonstrations", batch=batch)
    assert report.demonstrations_created == 1 and not Comparison.objects.exists()
    d = Demonstration.objects.get()
    assert d.prompt.turns == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    assert d.response == "Why did the chicken cross the road?"
    assert d.source == "anthropic-hh" and d.provenance["importer"] == "hh"
    # the same file as comparisons still needs its category
    with pytest.raises(ValidationError, match="choose helpfulness or safety"):
        do_import(jsonl(HH_ROW), fmt="hh", batch=batch)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (demo(response="a\u0000b"), "response", "contains a NUL character"),
        (demo(response="\ud800"), "response", "lone surrogate"),
        (demo(response="   "), "response", "is empty"),
        (demo(response="x" * (importers.MAX_TEXT_CHARS + 1)), "response", "over the 200000"),
        ({"turns": [{"role": "user", "content": "hi"}]}, "response", "is missing"),
        ({"response": "hi"}, "turns", "is missing"),
        (demo(dialogue="again"), "dialogue", "a second time"),
        (
            demo(turns=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]),
            "turns[1].role",
            "the last turn must be the user's",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}]},
            "messages[1].role",
            "must be the assistant's",
        ),
        (demo(provenance=[1]), "provenance", "must be an object"),
    ],
)
def test_bad_rows_are_named_by_line_and_field_and_nothing_is_written(row, field, message):
    batch = BatchFactory()
    before = (Prompt.objects.count(), Demonstration.objects.count(), Comparison.objects.count())
    with pytest.raises(ImportFileError) as refused:
        do_import(jsonl(demo(1), native_row(1), row), batch=batch)
    [problem] = refused.value.problems
    assert (problem.line, problem.field) == (3, field) and message in problem.message
    assert "d.jsonl" in str(refused.value)
    after = (Prompt.objects.count(), Demonstration.objects.count(), Comparison.objects.count())
    assert after == before


def test_duplicates_in_the_file_and_in_the_batch_bom_crlf_gzip_and_partial():
    batch = BatchFactory()
    with pytest.raises(ImportFileError, match="line 2: duplicate of line 1"):
        do_import(jsonl(demo(1), demo(1)), batch=batch)
    data = gzip.compress(jsonl(demo(1), demo(2), bom=True, crlf=True))
    assert do_import(data, batch=batch).demonstrations_created == 2
    again = do_import(jsonl(demo(1), demo(3)), batch=batch)
    assert (again.demonstrations_created, again.demonstrations_existing) == (1, 1)
    assert "1 demonstration(s) already in the batch, not duplicated" in again.summary()
    partial = do_import(jsonl(demo(4), demo(response="")), batch=batch, skip_invalid=True)
    assert partial.demonstrations_created == 1 and partial.skipped_invalid[0].line == 2
    assert Demonstration.objects.filter(batch=batch).count() == 4
    with pytest.raises(ValidationError, match="already has this demonstration"):
        services.demonstration_create(
            batch=batch,
            turns=[Turn(Role.USER, "How do I boil an egg? (4)")],
            response="Boil it for ten minutes. (4)",
        )


def test_pandalm_or_pairwise_cannot_hold_demonstrations():
    with pytest.raises(ValidationError, match="demonstrations are imported from native or hh"):
        do_import(b"[]", fmt="pandalm", kind="demonstrations")


@pytest.mark.parametrize("entry", ["page", "api", "command"])
def test_every_import_path_takes_demonstrations(entry, admin_user, tmp_path):
    data = jsonl(demo(1), demo(2))
    bad = jsonl(demo(1), demo(response=""))
    if entry == "command":
        path, bad_path = tmp_path / "d.jsonl", tmp_path / "bad.jsonl"
        path.write_bytes(data)
        bad_path.write_bytes(bad)
        with pytest.raises(CommandError, match="nothing was imported|Nothing was imported"):
            call_command("pairwise_import", str(bad_path), "--batch", "sft", "--format", "native")
        assert not Batch.objects.filter(name="sft").exists()  # no half-made batch
        out = io.StringIO()
        args = ["--batch", "sft", "--format", "hh", "--kind", "demonstrations"]
        hh = tmp_path / "hh.jsonl"
        hh.write_bytes(jsonl(HH_ROW))
        call_command("pairwise_import", str(hh), *args, stdout=out)
        call_command(
            "pairwise_import", str(path), "--batch", "sft", "--format", "native", stdout=out
        )
        assert "1 demonstration(s) imported from hh.jsonl" in out.getvalue()
        assert Demonstration.objects.filter(batch__name="sft").count() == 3
        return
    batch = BatchFactory(name="sft")
    if entry == "page":
        client = Client()
        client.force_login(admin_user)
        url = reverse("batch_import", args=[batch.pk])
        refused = client.post(url, {"file": named(bad), "fmt": "native", "kind": "auto"})
        assert refused.status_code == 400
        assert "<b>line 2, response</b>: is empty" in refused.content.decode()
        hh = client.post(url, {"file": named(jsonl(HH_ROW)), "fmt": "hh", "kind": "demonstrations"})
        assert hh.status_code == 200, hh.content.decode()
        ok = client.post(url, {"file": named(data), "fmt": "native", "kind": "auto"})
        assert ok.status_code == 200
        page = html.unescape(ok.content.decode())
        assert "2 demonstration(s) imported from d.jsonl (2 lines)." in page
        detail = html.unescape(
            client.get(reverse("batch_detail", args=[batch.pk])).content.decode()
        )
        assert "Demonstrations <span" in detail and "Boil it for ten minutes. (2)" in detail
        assert (
            client.get(reverse("batch_detail", args=[batch.pk])).context["progress"].demonstrations
            == 3
        )
        return
    client = APIClient()
    client.force_authenticate(admin_user)
    url = f"/api/v1/batches/{batch.pk}/import/"
    refused = client.post(url, {"file": named(bad), "format": "native"})
    assert refused.status_code == 400
    assert (refused.json()["problems"][0]["line"], refused.json()["problems"][0]["field"]) == (
        2,
        "response",
    )
    hh = client.post(url, {"file": named(jsonl(HH_ROW)), "format": "hh", "kind": "demonstrations"})
    assert hh.status_code == 201 and hh.json()["demonstrations_created"] == 1
    ok = client.post(url, {"file": named(data), "format": "native", "kind": "auto"})
    assert ok.status_code == 201 and ok.json()["demonstrations_created"] == 2
    assert client.get(f"/api/v1/batches/{batch.pk}/").json()["demonstrations"] == 3
    listed = client.get("/api/v1/batches/").json()["results"]
    assert [b["demonstrations"] for b in listed if b["id"] == batch.pk] == [3]


def named(data: bytes, name="d.jsonl") -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = name
    return upload


# --- batches: open, freeze, hash -------------------------------------------------------


def old_content_hash(batch) -> str:
    """The freeze hash as it was computed before demonstrations existed, for a batch
    without gold checks or review: its comparisons, then its labels."""
    digest = hashlib.sha256()
    for c in Comparison.objects.filter(batch=batch).order_by("id"):
        digest.update(json.dumps(["c", c.id, c.content_hash, c.category]).encode())
    for label in Label.objects.filter(comparison__batch=batch).order_by("id"):
        row = [
            label.id, label.comparison_id, label.annotator_id, label.source_annotator,
            label.preferred, label.strength, label.safety_a, label.safety_b, label.safety_bin,
            label.comment, label.left, label.time_spent_ms,
        ]  # fmt: skip
        digest.update(json.dumps(["l", *row]).encode())
    return digest.hexdigest()


def labelled_batch(n=2):
    batch = BatchFactory()
    for _ in range(n):
        make_comparison(batch)
    services.batch_transition(batch=batch, to=Batch.Status.OPEN)
    annotator = UserFactory(role="annotator")
    while (a := assignments.assignment_next(annotator=annotator)) is not None:
        labels.label_submit(
            assignment_id=a.pk, annotator=annotator, data=rules.LabelInput("A", "better")
        )
    return batch


def test_a_batch_without_demonstrations_hashes_exactly_as_before():
    batch = labelled_batch()
    other = BatchFactory()
    do_import(jsonl(demo(1)), batch=other)  # demonstrations elsewhere change nothing here
    assert services.batch_content_hash(batch) == old_content_hash(batch)
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    frozen = services.batch_transition(batch=batch, to=Batch.Status.FROZEN)
    assert frozen.freeze_hash == old_content_hash(batch)


def test_demonstrations_are_covered_by_the_freeze_hash():
    batch = labelled_batch()
    before = services.batch_content_hash(batch)
    do_import(jsonl(demo(1)), batch=batch)
    with_one = services.batch_content_hash(batch)
    assert with_one != before
    Demonstration.objects.filter(batch=batch).update(response="changed", content_hash="0" * 64)
    assert services.batch_content_hash(batch) not in (before, with_one)


def test_a_batch_of_demonstrations_alone_opens_closes_freezes_and_then_takes_no_more():
    batch = BatchFactory()
    with pytest.raises(ValidationError, match="has no comparisons to open"):
        services.batch_transition(batch=batch, to=Batch.Status.OPEN)
    do_import(jsonl(demo(1), demo(2)), batch=batch)
    for status in (Batch.Status.OPEN, Batch.Status.CLOSED, Batch.Status.FROZEN):
        batch = services.batch_transition(batch=batch, to=status)
    assert batch.freeze_hash == services.batch_content_hash(batch)
    with pytest.raises(ValidationError, match="can no longer be added"):
        do_import(jsonl(demo(3)), batch=batch)
    assert Demonstration.objects.filter(batch=batch).count() == 2


# --- the SFT stage's selector -------------------------------------------------------------


def frozen_with(*rows, **batch_kw):
    batch = BatchFactory(**batch_kw)
    do_import(jsonl(*rows), batch=batch)
    for status in (Batch.Status.OPEN, Batch.Status.CLOSED, Batch.Status.FROZEN):
        batch = services.batch_transition(batch=batch, to=status)
    return batch


def test_demonstrations_for_batches_in_batch_then_id_order():
    first = frozen_with(demo(1), demo(2, turns=[{"role": "user", "content": "q"}]))
    second = frozen_with(demo(3))
    got = selectors.demonstrations_for_batches([second.pk, first.pk])
    assert got == [
        (
            [{"role": "user", "content": "How do I boil an egg? (1)"}],
            "Boil it for ten minutes. (1)",
        ),
        ([{"role": "user", "content": "q"}], "Boil it for ten minutes. (2)"),
        (
            [{"role": "user", "content": "How do I boil an egg? (3)"}],
            "Boil it for ten minutes. (3)",
        ),
    ]
    assert selectors.demonstrations_for_batches([labelled_frozen().pk]) == []


def labelled_frozen():
    batch = labelled_batch(1)
    services.batch_transition(batch=batch, to=Batch.Status.CLOSED)
    return services.batch_transition(batch=batch, to=Batch.Status.FROZEN)


def test_demonstrations_for_batches_refuses_unfrozen_evaluation_and_missing_batches():
    draft = BatchFactory(name="draft-week")
    do_import(jsonl(demo(1)), batch=draft)
    with pytest.raises(ValueError, match="not frozen: draft-week"):
        selectors.demonstrations_for_batches([draft.pk])
    evaluation = frozen_with(demo(2), name="blind", purpose=Batch.Purpose.EVALUATION)
    with pytest.raises(ValueError, match="evaluation: blind"):
        selectors.demonstrations_for_batches([evaluation.pk])
    with pytest.raises(ValueError, match=r"no batch with id\(s\) \[999999\]"):
        selectors.demonstrations_for_batches([999999])


# --- the live page: write the ideal response instead of choosing --------------------------


def ready_live_turn(annotator, text="tell me about egg"):
    """A live session whose turn has its two responses ready (what the worker leaves)."""
    batch = BatchFactory(name=f"Live annotation: {text}")
    session = LiveSession.objects.create(
        annotator=annotator, batch=batch, turns=[{"role": "user", "content": text}]
    )
    comparison = make_comparison(batch, turns=[Turn(Role.USER, text)])
    services.batch_transition(batch=batch, to=Batch.Status.OPEN)
    assignments.assignment_create_for(comparison=comparison, annotator=annotator, left="A")
    turn = LiveTurn.objects.create(
        session=session, prompt_text=text, status=LiveTurn.Status.READY, comparison=comparison
    )
    return session, turn


def test_an_annotator_writes_the_ideal_response_instead_of_choosing(client, annotator):
    session, turn = ready_live_turn(annotator)
    client.force_login(annotator)
    page = client.get(f"/rlhf/live/{session.pk}/").content.decode()
    assert "Write the ideal response" in page and f"/rlhf/live/{session.pk}/demonstrate/" in page
    response = client.post(
        f"/rlhf/live/{session.pk}/demonstrate/", {"response": "  Boil it, then cool it.  "}
    )
    assert response.status_code == 302
    d = Demonstration.objects.get()
    assert (d.written_by, d.response, d.source, d.batch) == (
        annotator,
        "Boil it, then cool it.",
        "live",
        session.batch,
    )
    assert d.prompt.turns == [{"role": "user", "content": "tell me about egg"}]
    assert d.provenance == {
        "live_session": session.pk,
        "live_turn": turn.pk,
        "instead_of_comparison": turn.comparison_id,
    }
    session.refresh_from_db()
    assert session.turns[-1] == {"role": "assistant", "content": "Boil it, then cool it."}
    turn.refresh_from_db()
    assert turn.status == LiveTurn.Status.LABELLED
    # the pair is not labelled: it goes back to the pool for the others
    assignment = Assignment.objects.get(comparison=turn.comparison, annotator=annotator)
    assert assignment.status == Assignment.Status.SKIPPED and not Label.objects.exists()
    assert Comparison.objects.get(pk=turn.comparison_id).claims == 0
    # and the composer is back for the next user turn
    assert 'name="prompt"' in client.get(f"/rlhf/live/{session.pk}/").content.decode()
    again = client.post(f"/rlhf/live/{session.pk}/demonstrate/", {"response": "More."})
    assert again.status_code == 400 and Demonstration.objects.count() == 1


def test_after_a_failed_generation_the_annotator_may_write_it(client, annotator):
    batch = BatchFactory(name="Live annotation failed")
    session = LiveSession.objects.create(
        annotator=annotator, batch=batch, turns=[{"role": "user", "content": "hello"}]
    )
    LiveTurn.objects.create(
        session=session, prompt_text="hello", status=LiveTurn.Status.FAILED, error="boom"
    )
    client.force_login(annotator)
    assert (
        "write the ideal response yourself"
        in client.get(f"/rlhf/live/{session.pk}/").content.decode()
    )
    client.post(f"/rlhf/live/{session.pk}/demonstrate/", {"response": "Hello there."})
    d = Demonstration.objects.get()
    assert d.batch == batch and "instead_of_comparison" not in d.provenance


@pytest.mark.parametrize(
    ("text", "message"),
    [("   ", "Write the response first"), ("a\u0000b", "contains a NUL character")],
)
def test_an_unusable_response_is_refused_and_kept_on_the_page(client, annotator, text, message):
    session, turn = ready_live_turn(annotator)
    client.force_login(annotator)
    response = client.post(f"/rlhf/live/{session.pk}/demonstrate/", {"response": text})
    assert response.status_code == 400 and message in html.unescape(response.content.decode())
    assert not Demonstration.objects.exists()
    turn.refresh_from_db()
    assert turn.status == LiveTurn.Status.READY


def test_permission_and_ownership_are_enforced_on_the_server(client, annotator):
    session, turn = ready_live_turn(annotator)
    url = f"/rlhf/live/{session.pk}/demonstrate/"
    client.force_login(UserFactory(username="res", role="researcher"))
    assert client.post(url, {"response": "x"}).status_code == 403
    client.force_login(UserFactory(username="other", role="annotator"))
    assert client.post(url, {"response": "x"}).status_code == 404  # as a missing session
    # an annotator who may label but not write demonstrations: 403, and the service says no
    labeller = UserFactory(username="labeller")
    labeller.user_permissions.add(Permission.objects.get(codename="add_label"))
    own, _ = ready_live_turn(labeller, text="and water")
    client.force_login(labeller)
    assert client.post(f"/rlhf/live/{own.pk}/demonstrate/", {"response": "x"}).status_code == 403
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        live.live_demonstrate(session_id=own.pk, annotator=labeller, text="x")
    assert "Write the ideal response" not in client.get(f"/rlhf/live/{own.pk}/").content.decode()
    assert not Demonstration.objects.exists()
    client.logout()
    assert client.post(url, {"response": "x"}).status_code == 302  # to the login page
