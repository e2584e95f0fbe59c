"""Import of HH and native JSONL: all or nothing, errors name line and field."""

import gzip
import io
import json

import pytest

from annotation import services
from annotation.importers import ImportFileError, format_hh_dialogue, parse_file
from annotation.models import Comparison, Label, Prompt
from tests.factories import BatchFactory, native_row

pytestmark = pytest.mark.django_db

HH_ROW = {
    "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: Why did the chicken cross the road?",
    "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: No.",
}


def jsonl(*rows) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())


def do_import(stream, fmt="native", **kw):
    return services.comparisons_import(
        batch=kw.pop("batch", None) or BatchFactory(),
        stream=stream,
        fmt=fmt,
        filename="f.jsonl",
        **kw,
    )


def test_hh_row_round_trips_and_makes_a_label():
    batch = BatchFactory()
    report = services.comparisons_import(
        batch=batch, stream=jsonl(HH_ROW), fmt="hh", category="helpfulness"
    )
    assert (report.created, report.labels_created) == (1, 1)
    c = Comparison.objects.get()
    turns = [type("T", (), t) for t in c.prompt.turns]
    from annotation.domain import Role, Turn

    turns = [Turn(Role(t["role"]), t["content"]) for t in c.prompt.turns]
    assert format_hh_dialogue(turns, c.response_a.text) == HH_ROW["chosen"]
    assert format_hh_dialogue(turns, c.response_b.text) == HH_ROW["rejected"]
    assert (
        Label.objects.get().preferred == "A"
        and Label.objects.get().source_annotator == "anthropic-hh"
    )
    assert len(c.prompt.turns) == 3 and c.prompt.turns[-1]["role"] == "user"


def test_native_import_keeps_provenance():
    report = do_import(jsonl(native_row(1), native_row(2)))
    assert report.created == 2
    c = Comparison.objects.first()
    assert c.response_a.model_version == "RLHF-V1" and c.response_a.sampling == {"temperature": 0.7}
    assert c.external_id == "r1"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"prompt": \n', "line 1: malformed JSON"),
        (
            json.dumps(native_row(response_a={"model_version": "x"})).encode() + b"\n",
            "line 1, field 'response_a.text': is missing",
        ),
        (
            json.dumps(native_row(response_b={"text": 5})).encode() + b"\n",
            "line 1, field 'response_b.text': must be a string, got int",
        ),
        (
            json.dumps(native_row(response_b={"text": "   "})).encode() + b"\n",
            "line 1, field 'response_b.text': is empty",
        ),
        (
            json.dumps(native_row(category="fun")).encode() + b"\n",
            "line 1, field 'category': must be one of",
        ),
        (
            json.dumps(native_row(prompt=[{"role": "bot", "content": "x"}])).encode() + b"\n",
            "line 1, field 'prompt[0].role'",
        ),
        (b"[1, 2]\n", "line 1: must be a JSON object, got list"),
        (b"\xff\xfe{}\n", "line 1: not valid UTF-8"),
        (b"", "the file is empty"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(content, expected):
    good = json.dumps(native_row(7)).encode() + b"\n"
    with pytest.raises(ImportFileError) as err:
        do_import(io.BytesIO(good + content if content else content))
    text = str(err.value).replace("line 2", "line 1") if content else str(err.value)
    assert expected in text
    assert Comparison.objects.count() == 0 and Prompt.objects.count() == 0


def test_huge_line_is_rejected_without_reading_it_whole():
    huge = json.dumps(native_row(response_a={"text": "x" * (2 << 20)})).encode() + b"\n"
    with pytest.raises(ImportFileError) as err:
        do_import(io.BytesIO(json.dumps(native_row(1)).encode() + b"\n" + huge))
    assert "line 2: line is longer than" in str(err.value)
    assert Comparison.objects.count() == 0


def test_duplicate_row_in_file_names_the_first():
    with pytest.raises(ImportFileError) as err:
        do_import(jsonl(native_row(1), native_row(2), native_row(1)))
    assert "line 3: duplicate of line 1" in str(err.value)


def test_reimport_does_not_duplicate():
    batch = BatchFactory()
    do_import(jsonl(native_row(1)), batch=batch)
    report = do_import(jsonl(native_row(1), native_row(2)), batch=batch)
    assert (report.created, report.duplicates_existing) == (1, 1)
    assert Comparison.objects.count() == 2


def test_explicit_partial_import_reports_skipped_rows():
    report = do_import(
        jsonl(native_row(1), native_row(2, response_a={"text": ""})), skip_invalid=True
    )
    assert report.created == 1
    assert [p.line for p in report.skipped_invalid] == [2]
    assert "1 invalid row(s) skipped" in report.summary()


def test_gzip_files_are_read():
    data = gzip.compress(json.dumps(HH_ROW).encode() + b"\n")
    report = do_import(io.BytesIO(data), fmt="hh", category="safety")
    assert report.created == 1 and Comparison.objects.get().category == "safety"


@pytest.mark.shared_data
def test_real_hh_helpful_base_parses_and_round_trips(shared_data):
    path = shared_data / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"
    with open(path, "rb") as fh:
        parsed = parse_file(fh, fmt="hh", category="helpfulness")
    with gzip.open(path, "rt") as fh:
        originals = [json.loads(line) for line in fh]
    assert len(parsed.rows) > 2300
    assert all(p.line for p in parsed.problems)  # every problem names its line
    for row in parsed.rows:
        original = originals[row.line - 1]
        assert format_hh_dialogue(row.turns, row.response_a.text) == original["chosen"]
        assert format_hh_dialogue(row.turns, row.response_b.text) == original["rejected"]
