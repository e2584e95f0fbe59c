"""Snapshot file formats: Django-free writers over plain label rows.

Every writer takes ``LabelRow`` objects in a fixed order (comparison id, then label id)
and writes bytes that depend on nothing else: no timestamps but the data's own, keys in
a fixed order, floats written by ``repr`` — so the same rows give byte-identical files.

Formats (see the README, "Export and import of preference data", for an example row of each):

- ``labels.jsonl``: full fidelity, one row per raw label with both responses' provenance;
- ``labels.parquet``: the same table in Parquet;
- ``pairwise.jsonl``: TRL's conversational preference format (explicit prompt) with a margin;
- ``hh.jsonl``: the Anthropic HH text format (``chosen`` / ``rejected`` whole dialogues);
- ``comparisons.jsonl``: one row per comparison with the annotators' aggregate;
- ``demonstrations.jsonl``: one row per demonstration (an ideal response) with its
  provenance, and ``sft.jsonl``: the same as TRL's conversational SFT rows
  (``{"messages": [...]}``), both only when the selection holds demonstrations, so a
  snapshot of labels alone is what it was before demonstrations existed.

Labels on gold checks (``gold_check``: true in the full formats and the aggregate) are
checks of annotators, not preference data: the training formats (``pairwise.jsonl``,
``hh.jsonl``) leave them out, so a gold comparison trains once, through its source.

The full formats carry each label's review (``review_status``: unreviewed, accepted or
overruled; the comparison's standing ``review`` verdict; ``review_flags``), the aggregate
the verdict. A label a reviewer overruled is left out of the training formats, as the
reward models' own training leaves it out (``annotation.selectors.preference_pairs_frozen``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

from annotation.domain import DEFAULT_MARGIN_TABLE, MARGINS, Role, Strength, Turn, margin_for
from annotation.importers import format_hh_dialogue

# 2: review status, verdict and flags per label (the verdict per comparison), gold checks.
SCHEMA_VERSION = 2

# The aggregated view's "mean strength": 3 significantly better … 0 negligibly better / unsure.
STRENGTH_SCORE: dict[str, int] = {
    Strength.SIGNIFICANTLY_BETTER: 3,
    Strength.BETTER: 2,
    Strength.SLIGHTLY_BETTER: 1,
    Strength.NEGLIGIBLY_BETTER_OR_UNSURE: 0,
}

FULL_JSONL = "labels.jsonl"
FULL_PARQUET = "labels.parquet"
PAIRWISE_JSONL = "pairwise.jsonl"
HH_JSONL = "hh.jsonl"
AGGREGATED_JSONL = "comparisons.jsonl"
ALL_FORMATS = (FULL_JSONL, FULL_PARQUET, PAIRWISE_JSONL, HH_JSONL, AGGREGATED_JSONL)
DEMONSTRATIONS_JSONL = "demonstrations.jsonl"
SFT_JSONL = "sft.jsonl"
DEMONSTRATION_FORMATS = (DEMONSTRATIONS_JSONL, SFT_JSONL)


class ResponseRow(NamedTuple):
    text: str
    model_version: str
    sampling: dict[str, Any]
    generated_at: str | None  # ISO 8601


UNREVIEWED, ACCEPTED, OVERRULED = "unreviewed", "accepted", "overruled"


class ReviewRow(NamedTuple):
    """A comparison's standing review verdict (``annotation.models.ReviewVerdict``)."""

    decision: str  # "accept" (one of the labels) or "adjudicate" (the reviewer's own)
    preferred: str
    strength: str  # "" when unrated
    reviewed_at: str  # ISO 8601

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "preferred": self.preferred,
            "strength": self.strength or None,
            "reviewed_at": self.reviewed_at,
        }


class LabelRow(NamedTuple):
    """One raw label with everything a snapshot writes about it.

    A named tuple rather than a frozen dataclass: one is built per label, and a tuple is
    built several times faster.
    """

    label_id: int
    comparison_id: int
    batch: str
    category: str
    source: str
    external_id: str
    prompt: list[dict[str, str]]  # [{"role": ..., "content": ...}, ...]
    response_a: ResponseRow
    response_b: ResponseRow
    preferred: str  # "A" or "B"
    strength: str  # "" when unrated
    safety_a: str
    safety_b: str
    safety_bin: str
    annotator: str  # pseudonymous, stable within one snapshot
    left: str
    comment: str
    time_spent_ms: int | None
    created_at: str  # ISO 8601
    gold_check: bool = False  # a label on a gold check (never training data)
    review: ReviewRow | None = None  # the comparison's standing review verdict, if any
    review_flags: tuple[str, ...] = ()  # why a reviewer was asked to look (ReviewFlag reasons)

    @property
    def review_status(self) -> str:
        """``unreviewed``; ``accepted`` when the verdict prefers the same response as this
        label; ``overruled`` when it prefers the other one."""
        if self.review is None:
            return UNREVIEWED
        return ACCEPTED if self.review.preferred == self.preferred else OVERRULED

    @property
    def chosen(self) -> ResponseRow:
        return self.response_a if self.preferred == "A" else self.response_b

    @property
    def rejected(self) -> ResponseRow:
        return self.response_b if self.preferred == "A" else self.response_a


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SORTED_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
# The C string escaper behind ``json.dumps(ensure_ascii=False)``, without its per-call setup.
_string = json.encoder.encode_basestring


def _dumps(obj: Any) -> str:
    return _ENCODER.encode(obj)


def _opt(value: str) -> str:
    """A string field that is blank when absent: written as null."""
    return _string(value) if value else "null"


def _response_json(r: ResponseRow) -> str:
    generated_at = _string(r.generated_at) if r.generated_at is not None else "null"
    return (
        f'{{"text":{_string(r.text)},"model_version":{_string(r.model_version)},'
        f'"sampling":{_SORTED_ENCODER.encode(r.sampling)},"generated_at":{generated_at}}}'
    )


_MARGIN_JSON = {
    strength: repr(margin) for strength, margin in MARGINS[DEFAULT_MARGIN_TABLE].items()
}


# Most labels are never reviewed: their review keys are one constant string.
_UNREVIEWED_JSON = f'"review_status":"{UNREVIEWED}","review":null,'


def _review_json(review: ReviewRow, preferred: str) -> str:
    status = ACCEPTED if review.preferred == preferred else OVERRULED
    return f'"review_status":"{status}","review":{_dumps(review.as_dict())},'


class FullRowEncoder:
    """Full-fidelity JSONL lines (without the newline), keys in schema order.

    Built from pieces with the C string escaper instead of one ``json.dumps`` per row, and
    the comparison's part (prompt, both responses) is encoded once for all its labels,
    which arrive one after another: the export is bound by this class.
    """

    def __init__(self) -> None:
        self._comparison_id: int | None = None
        self._comparison_part = ""

    def encode(self, row: LabelRow) -> str:
        if row.comparison_id != self._comparison_id:
            self._comparison_id = row.comparison_id
            self._comparison_part = (
                f'"comparison_id":{row.comparison_id},'
                f'"batch":{_string(row.batch)},"category":{_string(row.category)},'
                f'"source":{_string(row.source)},"external_id":{_string(row.external_id)},'
                f'"prompt":{_ENCODER.encode(row.prompt)},'
                f'"response_a":{_response_json(row.response_a)},"response_b":{_response_json(row.response_b)},'
                f'"gold_check":{"true" if row.gold_check else "false"},'
            )
        time_spent = "null" if row.time_spent_ms is None else int(row.time_spent_ms)
        return (
            f'{{"label_id":{row.label_id},{self._comparison_part}'
            f'"preferred":{_string(row.preferred)},"strength":{_opt(row.strength)},'
            f'"margin":{_MARGIN_JSON.get(row.strength, "0.0")},'
            f'"safety_a":{_opt(row.safety_a)},"safety_b":{_opt(row.safety_b)},'
            f'"safety_bin":{_opt(row.safety_bin)},"annotator":{_string(row.annotator)},'
            f'"left":{_opt(row.left)},"comment":{_string(row.comment)},'
            f'"time_spent_ms":{time_spent},"created_at":{_string(row.created_at)},'
            f"{_UNREVIEWED_JSON if row.review is None else _review_json(row.review, row.preferred)}"
            f'"review_flags":{_dumps(row.review_flags) if row.review_flags else "[]"}}}'
        )


def full_row_json(row: LabelRow) -> str:
    """One full-fidelity JSONL line (without the newline)."""
    return FullRowEncoder().encode(row)


def pairwise_row(row: LabelRow) -> dict[str, Any]:
    """TRL's conversational preference example with an explicit prompt, plus a margin.

    ``RewardTrainer`` adds the margin inside its loss when the column is present;
    ``DPOTrainer`` ignores it. The remaining keys let the rows be imported back.
    """
    return {
        "prompt": row.prompt,
        "chosen": [{"role": "assistant", "content": row.chosen.text}],
        "rejected": [{"role": "assistant", "content": row.rejected.text}],
        "margin": margin_for(row.strength),
        "strength": row.strength or None,
        "category": row.category,
        "comparison_id": row.comparison_id,
        "annotator": row.annotator,
    }


def _turns(prompt: list[dict[str, str]]) -> list[Turn]:
    return [Turn(Role(t["role"]), t["content"]) for t in prompt]


def hh_row(row: LabelRow) -> dict[str, str]:
    """Anthropic HH: the whole dialogue ending in the chosen / the rejected response.

    Written with ``json.dumps`` defaults but ``ensure_ascii=False``, as the HH files are,
    so imported HH rows come back byte for byte.
    """
    turns = _turns(row.prompt)
    return {
        "chosen": format_hh_dialogue(turns, row.chosen.text),
        "rejected": format_hh_dialogue(turns, row.rejected.text),
    }


def aggregate_row(rows: list[LabelRow]) -> dict[str, Any]:
    """One comparison's labels summed up: votes, majority, agreement, mean strength."""
    first = rows[0]
    votes_a = sum(1 for r in rows if r.preferred == "A")
    votes_b = len(rows) - votes_a
    rated = [STRENGTH_SCORE[r.strength] for r in rows if r.strength]
    return {
        "comparison_id": first.comparison_id,
        "batch": first.batch,
        "category": first.category,
        "prompt": first.prompt,
        "response_a": first.response_a.text,
        "response_b": first.response_b.text,
        "n_annotators": len(rows),
        "votes_a": votes_a,
        "votes_b": votes_b,
        "majority": "A" if votes_a > votes_b else "B" if votes_b > votes_a else "tie",
        "agreement": max(votes_a, votes_b) / len(rows),
        "mean_strength": sum(rated) / len(rated) if rated else None,
        "n_rated": len(rated),
        "gold_check": first.gold_check,
        "review": None if first.review is None else first.review.as_dict(),
    }


class _HashingFile:
    """Binary file wrapper that counts and hashes what is written through it."""

    def __init__(self, path: Path):
        self.path = path
        self._f: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.sha256 = hashlib.sha256()
        self.bytes = 0
        self.rows = 0

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self.sha256.update(data)
        self.bytes += len(data)

    def close(self) -> None:
        self._f.close()


class JsonlWriter:
    """Buffers encoded lines and writes them in blocks of about 1 MiB."""

    def __init__(self, path: Path):
        self.out = _HashingFile(path)
        self._buf: list[str] = []
        self._size = 0

    def write_line(self, line: str) -> None:
        self._buf.append(line)
        self._size += len(line)
        self.out.rows += 1
        if self._size >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self.out.write(("\n".join(self._buf) + "\n").encode())
            self._buf, self._size = [], 0

    def close(self) -> FileInfo:
        self.flush()
        self.out.close()
        return FileInfo(
            self.out.path.name, self.out.sha256.hexdigest(), self.out.bytes, self.out.rows
        )


@dataclass(frozen=True)
class FileInfo:
    name: str
    sha256: str
    bytes: int
    rows: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ParquetWriter:
    """The full-fidelity table in Parquet, written in row groups of ``group_rows`` rows.

    The schema is fixed (never inferred), and Parquet files carry no write time, so the
    same rows give the same bytes with the same pyarrow version.
    """

    group_rows = 50_000

    def __init__(self, path: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.path = pa, path
        turn = pa.struct([("role", pa.string()), ("content", pa.string())])
        response = pa.struct(
            [
                ("text", pa.string()),
                ("model_version", pa.string()),
                ("sampling", pa.string()),  # JSON: keys vary by generator
                ("generated_at", pa.string()),
            ]
        )
        self.schema = pa.schema(
            [
                ("label_id", pa.int64()),
                ("comparison_id", pa.int64()),
                ("batch", pa.string()),
                ("category", pa.string()),
                ("source", pa.string()),
                ("external_id", pa.string()),
                ("prompt", pa.list_(turn)),
                ("response_a", response),
                ("response_b", response),
                ("gold_check", pa.bool_()),
                ("preferred", pa.string()),
                ("strength", pa.string()),
                ("margin", pa.float64()),
                ("safety_a", pa.string()),
                ("safety_b", pa.string()),
                ("safety_bin", pa.string()),
                ("annotator", pa.string()),
                ("left", pa.string()),
                ("comment", pa.string()),
                ("time_spent_ms", pa.int64()),
                ("created_at", pa.string()),
                ("review_status", pa.string()),
                (
                    "review",
                    pa.struct(
                        [
                            ("decision", pa.string()),
                            ("preferred", pa.string()),
                            ("strength", pa.string()),
                            ("reviewed_at", pa.string()),
                        ]
                    ),
                ),
                ("review_flags", pa.list_(pa.string())),
            ]
        )
        self._writer = pq.ParquetWriter(
            path, self.schema, compression="zstd", write_statistics=True
        )
        self._rows: list[dict[str, Any]] = []
        self.rows = 0

    @staticmethod
    def _response(r: ResponseRow) -> dict[str, Any]:
        return {
            "text": r.text,
            "model_version": r.model_version,
            "sampling": json.dumps(
                r.sampling, ensure_ascii=False, separators=(",", ":"), sort_keys=True
            ),
            "generated_at": r.generated_at,
        }

    def write(self, row: LabelRow) -> None:
        self._rows.append(
            {
                "label_id": row.label_id,
                "comparison_id": row.comparison_id,
                "batch": row.batch,
                "category": row.category,
                "source": row.source,
                "external_id": row.external_id,
                "prompt": row.prompt,
                "response_a": self._response(row.response_a),
                "response_b": self._response(row.response_b),
                "gold_check": row.gold_check,
                "preferred": row.preferred,
                "strength": row.strength or None,
                "margin": margin_for(row.strength),
                "safety_a": row.safety_a or None,
                "safety_b": row.safety_b or None,
                "safety_bin": row.safety_bin or None,
                "annotator": row.annotator,
                "left": row.left or None,
                "comment": row.comment,
                "time_spent_ms": row.time_spent_ms,
                "created_at": row.created_at,
                "review_status": row.review_status,
                "review": None if row.review is None else row.review.as_dict(),
                "review_flags": list(row.review_flags),
            }
        )
        self.rows += 1
        if len(self._rows) >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(self.pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> FileInfo:
        self._flush()
        self._writer.close()
        return FileInfo(self.path.name, file_sha256(self.path), self.path.stat().st_size, self.rows)


class SnapshotWriter:
    """Writes every format from one ordered pass over label rows.

    Rows must come ordered by comparison id, then label id: the aggregated view closes a
    comparison when the next one starts, so it holds one comparison's labels at a time.
    """

    def __init__(self, directory: Path, formats: Iterable[str] = ALL_FORMATS):
        self.directory = directory
        formats = set(formats)
        self.full = JsonlWriter(directory / FULL_JSONL) if FULL_JSONL in formats else None
        self._full_encoder = FullRowEncoder()
        self.pairwise = (
            JsonlWriter(directory / PAIRWISE_JSONL) if PAIRWISE_JSONL in formats else None
        )
        self.hh = JsonlWriter(directory / HH_JSONL) if HH_JSONL in formats else None
        self.aggregated = (
            JsonlWriter(directory / AGGREGATED_JSONL) if AGGREGATED_JSONL in formats else None
        )
        self.parquet = ParquetWriter(directory / FULL_PARQUET) if FULL_PARQUET in formats else None
        self._group: list[LabelRow] = []

    def write(self, row: LabelRow) -> None:
        if self.full is not None:
            self.full.write_line(self._full_encoder.encode(row))
        trains = not row.gold_check and row.review_status != OVERRULED
        if self.pairwise is not None and trains:
            self.pairwise.write_line(_dumps(pairwise_row(row)))
        if self.hh is not None and trains:
            self.hh.write_line(json.dumps(hh_row(row), ensure_ascii=False))
        if self.parquet is not None:
            self.parquet.write(row)
        if self.aggregated is not None:
            if self._group and self._group[0].comparison_id != row.comparison_id:
                self.aggregated.write_line(_dumps(aggregate_row(self._group)))
                self._group = []
            self._group.append(row)

    def close(self) -> list[FileInfo]:
        if self.aggregated is not None and self._group:
            self.aggregated.write_line(_dumps(aggregate_row(self._group)))
            self._group = []
        writers = [self.full, self.parquet, self.pairwise, self.hh, self.aggregated]
        return sorted((w.close() for w in writers if w is not None), key=lambda f: f.name)


class DemonstrationRow(NamedTuple):
    """One demonstration with everything a snapshot writes about it."""

    demonstration_id: int
    batch: str
    source: str
    prompt: list[dict[str, str]]  # the dialogue, ending with the user's turn
    response: str
    written_by: str | None  # pseudonymous annotator id; None when imported
    provenance: dict[str, Any]
    created_at: str  # ISO 8601

    @property
    def messages(self) -> list[dict[str, str]]:
        return [*self.prompt, {"role": "assistant", "content": self.response}]


def demonstration_row_json(row: DemonstrationRow) -> str:
    """One ``demonstrations.jsonl`` line (without the newline), keys in schema order and
    the provenance's keys sorted (the database may store them in any order)."""
    written_by = _string(row.written_by) if row.written_by is not None else "null"
    return (
        f'{{"demonstration_id":{row.demonstration_id},"batch":{_string(row.batch)},'
        f'"source":{_string(row.source)},"prompt":{_ENCODER.encode(row.prompt)},'
        f'"response":{_string(row.response)},"written_by":{written_by},'
        f'"provenance":{_SORTED_ENCODER.encode(row.provenance)},'
        f'"created_at":{_string(row.created_at)}}}'
    )


def sft_row(row: DemonstrationRow) -> dict[str, Any]:
    """TRL's conversational language-modelling example: the dialogue and the response as
    one list of ``messages`` (``SFTTrainer`` trains on the assistant's turns with
    ``assistant_only_loss``). ``demonstration_id`` names the row in ``demonstrations.jsonl``."""
    return {"messages": row.messages, "demonstration_id": row.demonstration_id}


class DemonstrationWriter:
    """Writes ``demonstrations.jsonl`` and ``sft.jsonl`` from demonstration rows in id order."""

    def __init__(self, directory: Path):
        self.full = JsonlWriter(directory / DEMONSTRATIONS_JSONL)
        self.sft = JsonlWriter(directory / SFT_JSONL)

    def write(self, row: DemonstrationRow) -> None:
        self.full.write_line(demonstration_row_json(row))
        self.sft.write_line(_dumps(sft_row(row)))

    def close(self) -> list[FileInfo]:
        return [self.full.close(), self.sft.close()]


def tar_stream(
    directory: Path, names: Iterable[str], *, prefix: str, chunk: int = 1 << 20
) -> Iterable[bytes]:
    """Yield a tar archive of ``directory/names`` block by block, never whole files.

    Members have mtime 0, owner 0 and mode 0644, so the same files give the same archive.
    """
    import tarfile

    for name in names:
        path = directory / name
        info = tarfile.TarInfo(f"{prefix}/{name}")
        info.size = path.stat().st_size
        info.mtime, info.mode, info.uid, info.gid = 0, 0o644, 0, 0
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        with open(path, "rb") as f:
            yield from iter(lambda f=f: f.read(chunk), b"")
        if remainder := info.size % tarfile.BLOCKSIZE:
            yield b"\0" * (tarfile.BLOCKSIZE - remainder)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)
