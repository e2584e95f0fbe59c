"""Bad import files answer a clear 4xx naming the line and field, and write nothing.

Each case goes through every entry point it applies to: the batch page, the API and
``manage.py pairwise_import`` (issue 9, findings 2-4).
"""

from __future__ import annotations

import gzip
import html
import io
import json
from dataclasses import dataclass

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import importers
from annotation.models import Batch, Comparison, Label, Prompt, Response
from tests.factories import BatchFactory, native_row

pytestmark = pytest.mark.django_db

ENTRY_POINTS = ["page", "api", "command"]
FAILED = {"page": 400, "api": 400, "command": 1}
IMPORTED = {"page": 200, "api": 201, "command": 0}
BATCH = "imports"


def line(i: int, **over) -> bytes:
    return (json.dumps(native_row(i, **over)) + "\n").encode()


@dataclass
class Outcome:
    status: int  # the HTTP status; for the command 0 (imported) or 1 (CommandError)
    text: str  # what a person reads: the page (unescaped), the API's JSON, the command's output
    body: dict | None = None  # the API's JSON


def import_via(entry, user, tmp_path, data: bytes, *, filename="rows.jsonl", skip_invalid=False):
    """Import ``data`` into the batch named BATCH (the page and the API need it to exist;
    the command creates it when missing)."""
    if entry == "command":
        path = tmp_path / filename
        path.write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        args = [str(path), "--batch", BATCH, "--format", "native"]
        try:
            call_command(
                "pairwise_import", *args, *(["--skip-invalid"] if skip_invalid else []),
                stdout=out, stderr=err,
            )  # fmt: skip
            status, message = 0, ""
        except CommandError as exc:
            status, message = 1, str(exc)
        return Outcome(status, out.getvalue() + err.getvalue() + message)
    upload = io.BytesIO(data)
    upload.name = filename
    batch = Batch.objects.get(name=BATCH)
    if entry == "page":
        client = Client()
        client.force_login(user)
        form = {"file": upload, "fmt": "native", "category": ""}
        response = client.post(
            reverse("batch_import", args=[batch.pk]),
            {**form, **({"skip_invalid": "on"} if skip_invalid else {})},
        )
        return Outcome(response.status_code, html.unescape(response.content.decode()))
    client = APIClient()
    client.force_authenticate(user)
    form = {"file": upload, "format": "native", "skip_invalid": str(skip_invalid).lower()}
    response = client.post(f"/api/v1/batches/{batch.pk}/import/", form)
    return Outcome(response.status_code, response.content.decode(), response.json())


def names(outcome: Outcome, line_no: int, field: str, message: str) -> bool:
    """The outcome names the problem's line, field and what is wrong."""
    if outcome.body is not None:
        return any(
            (p["line"], p["field"]) == (line_no, field) and message in p["message"]
            for p in outcome.body["problems"]
        )
    where = (f"line {line_no}, field '{field}'", f"line {line_no}, {field}") if field else None
    return message in outcome.text and (
        where is None
        and f"line {line_no}" in outcome.text
        or where is not None
        and any(w in outcome.text for w in where)
    )


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Batch, Prompt, Response, Comparison, Label))


@pytest.fixture
def start(entry_point):
    """The batch for the page and the API (the command makes its own), then the counts."""
    if entry_point != "command":
        BatchFactory(name=BATCH)
    return counts()


# --- finding 2: text a database cannot store, broken gzip, deep nesting ------------------


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize(
    "row, field, message",
    [
        (
            {"prompt": [{"role": "user", "content": "a\x00b"}]},
            "prompt[0].content",
            "contains a NUL character (\\u0000) at position 1",
        ),
        ({"response_a": {"text": "a\ud800b"}}, "response_a.text", "contains a lone surrogate"),
        (
            {"response_b": {"text": "b", "sampling": {"seed\x00": 1}}},
            "response_b.sampling",
            "has a key that contains a NUL",
        ),
    ],
)
def test_nul_or_lone_surrogate_is_named_by_line_and_field(
    entry_point, start, admin_user, tmp_path, row, field, message
):
    data = line(1) + line(2, **row)  # json.dumps writes them as \u0000 and \ud800 escapes
    outcome = import_via(entry_point, admin_user, tmp_path, data)
    assert outcome.status == FAILED[entry_point], outcome.text
    assert names(outcome, 2, field, message), outcome.text
    assert counts() == start


def _truncated_gzip() -> bytes:
    data = gzip.compress(b"".join(line(i) for i in range(50)))
    return data[: len(data) // 2]


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("skip_invalid", [False, True])
@pytest.mark.parametrize(
    "data, message",
    [
        (_truncated_gzip(), "the gzip data ends early (a truncated .gz file?)"),
        (b"\x1f\x8b" + b"not gzip at all" * 10, "the file starts like gzip but is not valid gzip"),
    ],
    ids=["truncated", "magic-then-garbage"],
)
def test_broken_gzip_is_refused_whole(
    entry_point, start, admin_user, tmp_path, data, message, skip_invalid
):
    outcome = import_via(
        entry_point, admin_user, tmp_path, data, filename="rows.jsonl.gz", skip_invalid=skip_invalid
    )
    assert outcome.status == FAILED[entry_point], outcome.text
    assert message in outcome.text
    assert counts() == start  # even a partial import keeps none of the lines read before


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_deeply_nested_line_is_a_problem_of_its_line(entry_point, start, admin_user, tmp_path):
    data = line(1) + b"[" * 100_000 + b"]" * 100_000 + b"\n" + line(3)
    outcome = import_via(entry_point, admin_user, tmp_path, data)
    assert outcome.status == FAILED[entry_point], outcome.text
    assert names(outcome, 2, "", "JSON nested more than 32 levels deep"), outcome.text
    assert counts() == start
    partial = import_via(entry_point, admin_user, tmp_path, data, skip_invalid=True)
    assert partial.status == IMPORTED[entry_point], partial.text
    assert Comparison.objects.count() == 2


def test_nesting_check_ignores_brackets_in_strings_and_never_backtracks():
    assert importers.nesting_too_deep(json.dumps({"a": "[" * 1000, "b": [[["x"]]]})) is None
    assert importers.nesting_too_deep("[" * 33 + "]" * 33) == 32
    assert importers.nesting_too_deep('{"a": "' + '\\"[' * 300_000 + "\\") is None
    # An escaped backslash ends no string: the 33rd bracket, after '["\\"' and 31 ',[', is deep.
    assert importers.nesting_too_deep('["\\\\"' + ",[" * 40) == 5 + 31 * 2 + 1


# --- finding 3: the size of an upload and of its answer ----------------------------------


@pytest.mark.parametrize("entry_point", ["page", "api"])
@pytest.mark.parametrize(
    "data, message",
    [
        (b"".join(line(i) for i in range(20)), "the file is larger than the import limit"),
        (
            gzip.compress(b"".join(line(i) for i in range(40))),
            "once decompressed, the file is larger than the import limit",
        ),
    ],
    ids=["file", "decompressed"],
)
def test_upload_over_the_limit_is_413_naming_the_limit(
    entry_point, start, admin_user, tmp_path, settings, data, message
):
    settings.PAIRWISE_IMPORT_MAX_BYTES = 2000
    assert len(data) > 2000 or data[:2] == b"\x1f\x8b"  # gzip: only its data is over
    outcome = import_via(entry_point, admin_user, tmp_path, data, skip_invalid=True)
    assert outcome.status == 413, outcome.text
    assert f"{message} of 2,000 bytes" in outcome.text
    assert counts() == start


@pytest.mark.parametrize("entry_point", ["command"])
def test_command_line_imports_have_no_size_limit(
    entry_point, start, admin_user, tmp_path, settings
):
    settings.PAIRWISE_IMPORT_MAX_BYTES = 2000
    outcome = import_via(entry_point, admin_user, tmp_path, b"".join(line(i) for i in range(20)))
    assert outcome.status == 0, outcome.text
    assert Comparison.objects.count() == 20


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_problems_are_listed_up_to_the_limit_then_counted(
    entry_point, start, admin_user, tmp_path, settings
):
    settings.PAIRWISE_IMPORT_MAX_PROBLEMS = 5
    data = line(1) + b"{x}\n" * 50
    failed = import_via(entry_point, admin_user, tmp_path, data)
    assert failed.status == FAILED[entry_point]
    assert counts() == start
    # All or nothing: it has failed at the fifth problem, so checking stops there.
    if entry_point == "api":
        assert len(failed.body["problems"]) == 5 and failed.body["lines_unchecked"] == 45
        assert "45 more line(s) not checked" in failed.body["detail"]
    elif entry_point == "page":
        assert (
            failed.text.count("malformed JSON") == 5 and "45 more lines not checked" in failed.text
        )
    else:
        assert failed.text.count("malformed JSON") == 5 and "45 line(s) left" in failed.text
    # A partial import checks every line: five listed, the rest counted.
    partial = import_via(entry_point, admin_user, tmp_path, data, skip_invalid=True)
    assert partial.status == IMPORTED[entry_point], partial.text
    assert "50 invalid row(s) skipped" in partial.text
    if entry_point == "api":
        assert len(partial.body["skipped_invalid"]) == 5
        assert partial.body["more_skipped_invalid"] == 45
    else:
        assert partial.text.count("malformed JSON") == 5 and "and 45 more" in partial.text
    assert Comparison.objects.count() == 1


# --- finding 4: files users make; a failed command leaves nothing ------------------------


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_byte_order_mark_and_crlf_line_ends_are_read(
    entry_point, start, admin_user, tmp_path, compress
):
    data = b"\xef\xbb\xbf" + line(1).replace(b"\n", b"\r\n") + line(2).replace(b"\n", b"\r\n")
    outcome = import_via(
        entry_point, admin_user, tmp_path, gzip.compress(data) if compress else data
    )
    assert outcome.status == IMPORTED[entry_point], outcome.text
    assert sorted(c.prompt.turns[0]["content"] for c in Comparison.objects.all()) == [
        "Question 1?",
        "Question 2?",
    ]
    assert Comparison.objects.get(external_id="r1").response_b.text == "Answer two"


def test_failed_command_leaves_no_batch_behind(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(line(1) + b"{x}\n")
    with pytest.raises(CommandError, match="Nothing was imported, and batch 'new' was not created"):
        call_command("pairwise_import", str(path), "--batch", "new", "--format", "native")
    assert not Batch.objects.filter(name="new").exists()
    assert Prompt.objects.count() == 0
    path.write_bytes(line(1))
    out = io.StringIO()
    call_command("pairwise_import", str(path), "--batch", "new", "--format", "native", stdout=out)
    assert "Created batch 'new'" in out.getvalue()
    assert Batch.objects.get(name="new").comparisons.count() == 1


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_malformed_json_message_reads_well(entry_point, start, admin_user, tmp_path):
    outcome = import_via(entry_point, admin_user, tmp_path, line(1) + b'{"prompt": "a\x01b"}\n')
    assert outcome.status == FAILED[entry_point]
    assert names(outcome, 2, "", "malformed JSON: Invalid control character at column 14")
    assert "at at" not in outcome.text
    assert counts() == start


def test_pandalm_malformed_json_message_reads_well():
    parsed = importers.parse_file(io.BytesIO(b'[{"a": "\x01"}]'), fmt="pandalm")
    assert [str(p) for p in parsed.problems] == [
        "malformed JSON: Invalid control character at line 1, column 9"
    ]


# --- values longer than their column -----------------------------------------------------


@pytest.mark.parametrize("entry_point", ["api"])
def test_names_longer_than_their_column_are_named_and_long_file_names_cut(
    entry_point, start, admin_user, tmp_path
):
    too_long = (
        line(1)
        + line(2, id="x" * 201)
        + line(3, response_a={"text": "a", "model_version": "m" * 300})
    )
    outcome = import_via(entry_point, admin_user, tmp_path, too_long)
    assert outcome.status == 400
    assert names(outcome, 2, "id", "is 201 characters, over the 200 limit")
    assert names(outcome, 3, "response_a.model_version", "is 300 characters")
    assert counts() == start
    outcome = import_via(entry_point, admin_user, tmp_path, line(1), filename="f" * 200 + ".jsonl")
    assert outcome.status == 201, outcome.text
    assert Comparison.objects.get().source == "f" * 100
