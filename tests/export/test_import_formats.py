"""Import of the pairwise format and multi-annotator (PandaLM) data; HH round trip on real data."""

import gzip
import io
import json

import pytest
from django.db.models import Count

from annotation import services
from annotation.export import formats
from annotation.export.selectors import SnapshotFilters
from annotation.export.services import snapshot_build_files
from annotation.importers import TIE_COMMENT, ImportFileError
from annotation.models import Comparison, Label
from tests.export.helpers import labelled_data, read_jsonl
from tests.factories import BatchFactory

pytestmark = pytest.mark.django_db


def export(tmp_path, sub, **filters):
    return snapshot_build_files(filters=SnapshotFilters.from_dict(filters), work_dir=tmp_path / sub)


def pairs_of(path):
    return [
        (r["prompt"], r["chosen"], r["rejected"], r["margin"], r["strength"])
        for r in read_jsonl(path)
    ]


def test_pairwise_round_trip_gives_the_same_pairs(tmp_path):
    labelled_data()
    first = export(tmp_path, "first")
    batch = BatchFactory(name="reimported")
    with open(first.directory / formats.PAIRWISE_JSONL, "rb") as f:
        report = services.comparisons_import(
            batch=batch, stream=f, fmt="pairwise", filename="pairwise.jsonl"
        )
    # Three annotators on one pair (some disagreeing) fold into one comparison again.
    assert (report.created, report.labels_created) == (8, 16)
    assert Comparison.objects.filter(batch=batch).count() == 8
    second = export(tmp_path, "second", batches=["reimported"])
    assert pairs_of(second.directory / formats.PAIRWISE_JSONL) == pairs_of(
        first.directory / formats.PAIRWISE_JSONL
    )
    # Importing the same file again duplicates nothing and says so.
    with open(first.directory / formats.PAIRWISE_JSONL, "rb") as f:
        again = services.comparisons_import(batch=batch, stream=f, fmt="pairwise")
    assert (again.created, again.duplicates_existing) == (0, 8)
    assert Label.objects.filter(comparison__batch=batch).count() == 16


def pairwise_line(**over):
    row = {
        "prompt": [{"role": "user", "content": "Hi?"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
        "margin": 2 / 3,
        "category": "helpfulness",
    }
    row.update(over)
    return json.dumps(row)


def test_pairwise_plain_strings_and_margin_to_strength():
    batch = BatchFactory()
    data = "\n".join(
        [
            pairwise_line(),
            pairwise_line(prompt="Plain prompt", chosen="Yes", rejected="No", margin=0),
        ]
    ).encode()
    services.comparisons_import(batch=batch, stream=io.BytesIO(data), fmt="pairwise")
    assert list(Label.objects.order_by("id").values_list("strength", flat=True)) == ["better", ""]


def test_invalid_pairwise_row_writes_nothing_and_names_line_and_field():
    batch = BatchFactory()
    data = "\n".join(
        [
            pairwise_line(),
            pairwise_line(chosen=[{"role": "user", "content": "x"}]),
            pairwise_line(prompt=[{"role": "user", "content": "Q2"}], margin=0.5),
        ]
    ).encode()
    with pytest.raises(ImportFileError) as err:
        services.comparisons_import(batch=batch, stream=io.BytesIO(data), fmt="pairwise")
    assert [(p.line, p.field) for p in err.value.problems] == [(2, "chosen[0].role"), (3, "margin")]
    assert Comparison.objects.count() == 0 and Label.objects.count() == 0


PANDALM = [
    {
        "idx": 0,
        "motivation_app": "Grammarly",
        "cmp_key": "bloom-7b_llama-7b",
        "instruction": "Fix this.",
        "input": "me go home",
        "response1": "I go home.",
        "response2": "I am going home.",
        "annotator1": 2,
        "annotator2": 0,
        "annotator3": 1,
    },
    {
        "idx": 1,
        "cmp_key": "opt-7b_llama-7b",
        "instruction": "Say hi.",
        "input": "",
        "response1": "Hi",
        "response2": "Hello",
        "annotator1": 1,
        "annotator2": 1,
        "annotator3": 1,
    },
]


def test_pandalm_keeps_each_annotator_and_represents_ties():
    batch = BatchFactory()
    stream = io.BytesIO(json.dumps(PANDALM, indent=4).encode())
    report = services.comparisons_import(batch=batch, stream=stream, fmt="pandalm")
    assert (report.created, report.labels_created) == (2, 6)
    first = Comparison.objects.get(external_id="0")
    assert first.prompt.turns == [{"role": "user", "content": "Fix this.\n\nme go home"}]
    assert (first.response_a.model_version, first.response_b.model_version) == (
        "bloom-7b",
        "llama-7b",
    )
    assert first.metadata["annotator2"] == 0
    labels = {lab.source_annotator: lab for lab in first.labels.all()}
    assert (
        labels["pandalm:annotator1"].preferred == "B"
        and labels["pandalm:annotator3"].preferred == "A"
    )
    tie = labels["pandalm:annotator2"]
    assert tie.strength == "negligibly_better_or_unsure" and tie.comment == TIE_COMMENT


def test_pandalm_bad_values_name_line_and_field():
    rows = [
        dict(PANDALM[0]),
        dict(PANDALM[1], response1=True),
        dict(PANDALM[1], idx=2, annotator3=3),
    ]
    stream = io.BytesIO(json.dumps(rows, indent=4).encode())
    with pytest.raises(ImportFileError) as err:
        services.comparisons_import(batch=BatchFactory(), stream=stream, fmt="pandalm")
    problems = err.value.problems
    assert [p.field for p in problems] == ["response1", "annotator3"]
    assert (
        problems[0].line == 14 and "item 1" in problems[0].message and "bool" in problems[0].message
    )
    assert Comparison.objects.count() == 0


@pytest.mark.shared_data
def test_pandalm_testset_real_file(shared_data):
    path = shared_data / "pandalm-testset" / "data" / "testset-v1.json"
    batch = BatchFactory()
    with open(path, "rb") as f, pytest.raises(ImportFileError) as err:
        services.comparisons_import(batch=batch, stream=f, fmt="pandalm", filename=path.name)
    bools = [p for p in err.value.problems if "bool" in p.message]
    assert len(bools) == 6 and {p.field for p in bools} == {"response1", "response2"}
    assert Comparison.objects.count() == 0
    with open(path, "rb") as f:
        report = services.comparisons_import(
            batch=batch, stream=f, fmt="pandalm", skip_invalid=True
        )
    assert report.created + len(report.skipped_invalid) == 999
    assert report.labels_created == 3 * report.created
    per_comparison = set(
        Comparison.objects.filter(batch=batch)
        .annotate(n=Count("labels"))
        .values_list("n", flat=True)
    )
    assert per_comparison == {3}
    ties = Label.objects.filter(comparison__batch=batch, comment=TIE_COMMENT).count()
    zeros = sum(
        [c.metadata[f"annotator{i}"] for i in (1, 2, 3)].count(0)
        for c in Comparison.objects.filter(batch=batch)
    )
    assert ties == zeros > 200


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "subset", ["helpful-base/test.jsonl.gz", "harmless-base/test-dev.jsonl.gz"]
)
def test_hh_export_reproduces_the_original_rows_exactly(shared_data, tmp_path, subset):
    path = shared_data / "hh-rlhf" / subset
    batch = BatchFactory(name="hh")
    with open(path, "rb") as f:
        report = services.comparisons_import(
            batch=batch,
            stream=f,
            fmt="hh",
            category="helpfulness",
            skip_invalid=True,
            filename=subset,
        )
    bad = {p.line for p in report.skipped_invalid}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        original = [line.rstrip("\n") for n, line in enumerate(f, 1) if n not in bad]
    result = export(tmp_path, "hh", batches=["hh"])
    exported = (result.directory / formats.HH_JSONL).read_text(encoding="utf-8").splitlines()
    assert len(exported) == report.created == len(original)
    assert exported == original
