"""Snapshots: filters, manifest, formats, byte-identical re-creation, empty selections."""

import json

import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ValidationError

from annotation.export import formats, services
from annotation.export.selectors import SnapshotFilters
from annotation.models import Snapshot
from tests.export.helpers import labelled_data, read_jsonl

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _snapshots_dir(settings, tmp_path):
    settings.SNAPSHOTS_DIR = tmp_path / "snapshots"


def build(tmp_path, sub="a", **filters):
    return services.snapshot_build_files(
        filters=SnapshotFilters.from_dict(filters), work_dir=tmp_path / sub
    )


def test_full_fidelity_rows_keep_every_label_and_provenance(tmp_path):
    labelled_data()
    result = build(tmp_path)
    rows = read_jsonl(result.directory / formats.FULL_JSONL)
    assert len(rows) == 16 and result.comparisons == 8
    row = rows[0]
    assert list(row) == [
        "label_id",
        "comparison_id",
        "batch",
        "category",
        "source",
        "external_id",
        "prompt",
        "response_a",
        "response_b",
        "gold_check",
        "preferred",
        "strength",
        "margin",
        "safety_a",
        "safety_b",
        "safety_bin",
        "annotator",
        "left",
        "comment",
        "time_spent_ms",
        "created_at",
        "review_status",
        "review",
        "review_flags",
    ]
    assert row["prompt"][-1] == {"role": "user", "content": "Hard, please."}
    assert row["response_a"]["model_version"] == "RLHF-V1" and row["response_a"]["sampling"] == {
        "temperature": 0.7
    }
    assert row["strength"] == "significantly_better" and row["margin"] == 1.0
    assert row["time_spent_ms"] == 12_000 and row["created_at"].endswith("Z")
    # Pseudonyms: one per annotator, stable, never the username.
    ids = {r["annotator"] for r in rows}
    assert len(ids) == 4 and all(i.startswith("ann-") for i in ids)
    assert not any("rater" in r["annotator"] for r in rows)
    safety = [r for r in rows if r["category"] == "safety" and r["strength"]]
    assert {r["safety_bin"] for r in safety} == {"preferred_safe_other_unsafe"}
    unrated = [r for r in rows if r["strength"] is None]
    assert len(unrated) == 1 and unrated[0]["margin"] == 0.0


def test_pairwise_hh_and_aggregate_formats(tmp_path):
    labelled_data()
    result = build(tmp_path)
    pairs = read_jsonl(result.directory / formats.PAIRWISE_JSONL)
    full = read_jsonl(result.directory / formats.FULL_JSONL)
    assert len(pairs) == len(full)
    for pair, row in zip(pairs, full, strict=True):
        chosen = row["response_a"] if row["preferred"] == "A" else row["response_b"]
        rejected = row["response_b"] if row["preferred"] == "A" else row["response_a"]
        assert pair["prompt"] == row["prompt"]
        assert pair["chosen"] == [{"role": "assistant", "content": chosen["text"]}]
        assert pair["rejected"] == [{"role": "assistant", "content": rejected["text"]}]
        assert pair["margin"] == row["margin"]
    assert sorted({p["margin"] for p in pairs}) == [0.0, 1 / 3, 2 / 3, 1.0]
    hh = read_jsonl(result.directory / formats.HH_JSONL)
    assert hh[0]["chosen"].startswith("\n\nHuman: How do I boil an egg?")
    assert (
        "\n\nAssistant: Do you want it soft or hard?\n\nHuman: Hard, please.\n\nAssistant: Boil it"
        in hh[0]["chosen"]
    )
    agg = read_jsonl(result.directory / formats.AGGREGATED_JSONL)
    assert len(agg) == 8
    first = agg[0]
    assert (first["n_annotators"], first["votes_a"], first["votes_b"], first["majority"]) == (
        3,
        2,
        1,
        "A",
    )
    assert first["agreement"] == pytest.approx(2 / 3) and first["mean_strength"] == pytest.approx(
        4 / 3
    )
    table = pq.read_table(result.directory / formats.FULL_PARQUET)
    assert table.num_rows == 16
    assert table.column("label_id").to_pylist() == [r["label_id"] for r in full]
    assert table.column("prompt").to_pylist()[0] == full[0]["prompt"]


def test_manifest_counts_checksums_and_versions(tmp_path):
    labelled_data()
    result = build(tmp_path)
    manifest = json.loads((result.directory / "manifest.json").read_text())
    assert manifest == result.manifest
    counts = manifest["counts"]
    assert counts["labels"] == 16 and counts["per_batch"] == {"week-1": 12, "week-2": 4}
    assert counts["per_category"] == {"helpfulness": 12, "safety": 4}
    assert counts["per_strength"]["unrated"] == 1 and counts["per_safety_bin"]["none"] == 13
    assert manifest["schema_version"] == formats.SCHEMA_VERSION and manifest["code_version"]
    for name, info in manifest["files"].items():
        assert formats.file_sha256(result.directory / name) == info["sha256"]
    assert set(manifest["files"]) == set(formats.ALL_FORMATS)


def test_recreating_gives_byte_identical_files(tmp_path):
    labelled_data()
    first = build(tmp_path, "one", categories="helpfulness")
    second = build(tmp_path, "two", categories="helpfulness")
    assert first.content_hash == second.content_hash
    for name in formats.ALL_FORMATS:
        assert (first.directory / name).read_bytes() == (second.directory / name).read_bytes(), name
    other = build(tmp_path, "three", categories="safety")
    assert other.content_hash != first.content_hash


@pytest.mark.parametrize(
    ("filters", "labels"),
    [
        ({"batches": ["week-1"]}, 12),
        ({"categories": ["safety"]}, 4),
        ({"strengths": ["better", "unrated"]}, 4),
        ({"safety_bins": ["preferred_safe_other_unsafe"]}, 3),
        ({"min_agreement": 1.0}, 6 + 4),  # two unanimous helpfulness comparisons + safety singles
        ({"min_annotators": 3}, 12),
        ({"date_from": "2000-01-01", "date_to": "2000-12-31"}, 0),
    ],
)
def test_filters(tmp_path, filters, labels):
    labelled_data()
    assert build(tmp_path, **filters).labels == labels


def test_bad_filters_are_named():
    with pytest.raises(ValidationError) as err:
        SnapshotFilters.from_dict(
            {"batches": ["nope"], "strengths": ["great"], "min_agreement": "2"}
        )
    assert set(err.value.message_dict) == {"batches", "strengths", "min_agreement"}


def test_request_builds_small_snapshot_inline_and_empty_is_clear(researcher):
    labelled_data()
    snap = services.snapshot_request(filters={"categories": ["safety"]}, created_by=researcher)
    assert snap.status == Snapshot.Status.READY and snap.label_count == 4
    assert (services.snapshot_directory(snap) / "labels.jsonl").exists()
    empty = services.snapshot_request(filters={"date_from": "1999-01-01", "date_to": "1999-01-02"})
    assert (
        empty.status == Snapshot.Status.READY and empty.label_count == 0 and empty.manifest["empty"]
    )
    assert (services.snapshot_directory(empty) / "labels.jsonl").read_bytes() == b""


def test_large_snapshot_goes_to_the_worker(monkeypatch, django_capture_on_commit_callbacks):
    labelled_data()
    monkeypatch.setattr(services, "INLINE_MAX_LABELS", 5)
    with django_capture_on_commit_callbacks(execute=True):
        snap = services.snapshot_request(filters={})
    assert snap.status == Snapshot.Status.PENDING  # returned before the (eager) task ran
    snap.refresh_from_db()
    assert snap.status == Snapshot.Status.READY and snap.label_count == 16 and snap.percent == 100


def test_tar_stream_is_a_valid_archive(tmp_path):
    import io
    import tarfile

    labelled_data()
    result = build(tmp_path)
    names = sorted(result.manifest["files"]) + ["manifest.json"]
    data = b"".join(formats.tar_stream(result.directory, names, prefix="snap"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == [f"snap/{n}" for n in names]
        assert (
            tar.extractfile("snap/labels.jsonl").read()
            == (result.directory / "labels.jsonl").read_bytes()
        )


def test_system_turns_do_not_break_the_hh_file(tmp_path):
    from annotation.domain import Role, Turn
    from tests.export.helpers import label
    from tests.factories import BatchFactory, make_comparison

    turns = [Turn(Role.SYSTEM, "Be brief."), Turn(Role.USER, "Hi?")]
    label(make_comparison(BatchFactory(name="sys"), turns=turns))
    result = build(tmp_path)
    row = read_jsonl(result.directory / formats.HH_JSONL)[0]
    assert row["chosen"].startswith("\n\nSystem: Be brief.\n\nHuman: Hi?\n\nAssistant: ")


def test_rebuilding_the_same_content_reuses_the_folder(researcher):
    labelled_data()
    first = services.snapshot_request(filters={"batches": ["week-2"]})
    second = services.snapshot_request(filters={"batches": ["week-2"]})
    assert first.pk != second.pk and first.content_hash == second.content_hash
    assert services.snapshot_directory(second).is_dir()
