"""Demonstrations in snapshots: demonstrations.jsonl with provenance and TRL's SFT rows
(sft.jsonl), written only when the selection holds demonstrations."""

import io
import json

import pytest

from annotation import services as annotation_services
from annotation.domain import Role, Turn
from annotation.export import formats, services
from annotation.export.selectors import SnapshotFilters
from annotation.models import Demonstration
from tests.export.helpers import labelled_data, read_jsonl
from tests.factories import BatchFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _snapshots_dir(settings, tmp_path):
    settings.SNAPSHOTS_DIR = tmp_path / "snapshots"


def build(tmp_path, sub="a", **filters):
    return services.snapshot_build_files(
        filters=SnapshotFilters.from_dict(filters), work_dir=tmp_path / sub
    )


ROWS = [
    {"turns": [{"role": "user", "content": "How do I boil an egg?"}], "response": "Ten minutes."},
    {
        "id": 7,
        "dialogue": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "A joke?"},
        ],
        "response": "No.",
        "provenance": {"vendor": "v1", "written_at": "2026-11-02"},
    },
]


def demonstrations(batch_name="sft-week", *, writer=None):
    batch = BatchFactory(name=batch_name)
    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    annotation_services.comparisons_import(
        batch=batch, stream=io.BytesIO(data), fmt="native", filename="demos.jsonl"
    )
    if writer is not None:
        annotation_services.demonstration_create(
            batch=batch,
            turns=[Turn(Role.USER, "Live question")],
            response="Live answer.",
            source="live",
            written_by=writer,
            provenance={"live_session": 1},
        )
    return batch


def test_demonstrations_are_exported_with_provenance_and_as_trl_sft_rows(tmp_path):
    _, _, users = labelled_data()
    demonstrations(writer=users[0])
    result = build(tmp_path)
    names = set(result.manifest["files"])
    assert names == {*formats.ALL_FORMATS, *formats.DEMONSTRATION_FORMATS}
    rows = read_jsonl(result.directory / formats.DEMONSTRATIONS_JSONL)
    assert [r["response"] for r in rows] == ["Ten minutes.", "No.", "Live answer."]
    assert list(rows[1]) == [
        "demonstration_id", "batch", "source", "prompt", "response", "written_by",
        "provenance", "created_at",
    ]  # fmt: skip
    assert rows[1]["provenance"] == {
        "file": "demos.jsonl",
        "given": {"vendor": "v1", "written_at": "2026-11-02"},
        "id": "7",
        "importer": "native",
        "line": 2,
    }
    assert rows[0]["written_by"] is None and rows[0]["source"] == "demos.jsonl"
    # the author by the same pseudonym as their labels in this snapshot, never the username
    labels = read_jsonl(result.directory / formats.FULL_JSONL)
    their_label = next(r for r in labels if r["label_id"] == users[0].labels.first().pk)
    assert rows[2]["written_by"] == their_label["annotator"]
    assert users[0].username not in (result.directory / formats.DEMONSTRATIONS_JSONL).read_text()
    sft = read_jsonl(result.directory / formats.SFT_JSONL)
    assert sft[1] == {
        "messages": [*ROWS[1]["dialogue"], {"role": "assistant", "content": "No."}],
        "demonstration_id": rows[1]["demonstration_id"],
    }
    assert result.manifest["counts"]["demonstrations"] == 3
    assert result.manifest["files"][formats.SFT_JSONL]["rows"] == 3
    again = build(tmp_path, "b")
    assert again.content_hash == result.content_hash
    for name in formats.DEMONSTRATION_FORMATS:
        assert (result.directory / name).read_bytes() == (again.directory / name).read_bytes()


def test_a_selection_without_demonstrations_keeps_its_files_and_hash(tmp_path):
    labelled_data()
    before = build(tmp_path, "before", batches="week-1")
    demonstrations()
    after = build(tmp_path, "after", batches="week-1")
    assert set(after.manifest["files"]) == set(formats.ALL_FORMATS)
    assert after.content_hash == before.content_hash
    assert after.manifest["counts"]["demonstrations"] == 0
    # the other filters are about labels: a category filter keeps the demonstrations
    with_them = build(tmp_path, "category", categories="safety")
    assert with_them.manifest["counts"]["demonstrations"] == 2
    assert not build(tmp_path, "later", date_from="2999-01-01").manifest["counts"]["demonstrations"]


def test_demonstrations_alone_are_not_an_empty_snapshot_and_sft_rows_import_back(tmp_path):
    demonstrations()
    result = build(tmp_path, batches="sft-week")
    assert result.manifest["empty"] is False and result.labels == 0
    back = BatchFactory(name="back")
    report = annotation_services.comparisons_import(
        batch=back,
        stream=io.BytesIO((result.directory / formats.SFT_JSONL).read_bytes()),
        fmt="native",
        filename="sft.jsonl",
    )
    assert report.demonstrations_created == 2
    original = Demonstration.objects.filter(batch__name="sft-week").order_by("id")
    copied = Demonstration.objects.filter(batch=back).order_by("id")
    assert [(d.prompt_id, d.response) for d in copied] == [
        (d.prompt_id, d.response) for d in original
    ]


def test_the_snapshot_api_lists_and_serves_the_demonstration_files(client, researcher):
    demonstrations()
    client.force_login(researcher)
    created = client.post(
        "/api/v1/data/snapshots/", {"batches": ["sft-week"]}, content_type="application/json"
    )
    assert created.status_code == 201, created.content
    snapshot = created.json()
    assert formats.SFT_JSONL in snapshot["manifest"]["files"]
    served = client.get(f"/api/v1/data/snapshots/{snapshot['id']}/files/{formats.SFT_JSONL}")
    body = b"".join(served.streaming_content).decode()
    assert served.status_code == 200 and json.loads(body.splitlines()[0])["messages"][-1] == {
        "role": "assistant",
        "content": "Ten minutes.",
    }


@pytest.mark.slow
def test_trl_sft_trainer_runs_on_the_sft_export(tmp_path):
    from datasets import load_dataset
    from transformers import LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from tests.export.test_trl_clients import tiny_llama, tiny_tokenizer

    demonstrations()
    path = build(tmp_path, batches="sft-week").directory / formats.SFT_JSONL
    dataset = load_dataset("json", data_files=str(path), split="train")
    assert "messages" in dataset.column_names and len(dataset) == 2
    texts = [" ".join(m["content"] for m in row["messages"]) for row in dataset]
    tokenizer = tiny_tokenizer(texts)
    trainer = SFTTrainer(
        model=tiny_llama(LlamaForCausalLM, tokenizer),
        args=SFTConfig(
            output_dir=str(tmp_path / "sft"),
            per_device_train_batch_size=2,
            max_steps=2,
            learning_rate=1e-3,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            max_length=128,
        ),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    out = trainer.train()
    assert out.global_step == 2 and out.training_loss == out.training_loss  # not NaN
