"""Parse preference-data files into plain rows, with errors that name the line and field.

No Django here: parsing is pure, so it is tested on its own and the service that writes
the rows (``services.comparisons_import``) can validate the whole file before writing any.

Formats (see README, "Import formats"):

- ``hh``: Anthropic HH-RLHF JSONL, ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...",
  "rejected": ...}``; both dialogues share the context and differ in the last Assistant
  turn. The chosen response becomes response A and, by default, an imported label.
- ``native``: Pairwise JSONL, one comparison per line::

    {"id": "optional-external-id",
     "category": "helpfulness" | "safety",
     "prompt": [{"role": "user", "content": "..."}, {"role": "assistant", ...}, ...],
     "response_a": {"text": "...", "model_version": "RLHF-V1",
                    "sampling": {"temperature": 0.7, "top_p": 0.9}, "generated_at": "2026-11-02T10:00:00Z"},
     "response_b": {...}}
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from annotation.domain import Category, Role, Turn

MAX_LINE_BYTES = 1 << 20  # 1 MiB: one comparison is never this large; a bigger line is a broken file
MAX_TEXT_CHARS = 200_000

HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
HH_ROLES = {"Human": Role.USER, "Assistant": Role.ASSISTANT}
HH_NAMES = {Role.USER: "Human", Role.ASSISTANT: "Assistant"}


@dataclass(frozen=True)
class ResponseIn:
    text: str
    model_version: str = ""
    sampling: dict[str, Any] = field(default_factory=dict)
    generated_at: datetime | None = None


@dataclass(frozen=True)
class LabelIn:
    """A label that came with the data (HH's chosen side, a rater of a multi-annotator set)."""

    preferred: str  # "A" or "B"
    source_annotator: str
    strength: str = ""  # blank: the source has no strength rating


@dataclass(frozen=True)
class ComparisonIn:
    line: int
    turns: tuple[Turn, ...]
    response_a: ResponseIn
    response_b: ResponseIn
    category: Category
    external_id: str = ""
    labels: tuple[LabelIn, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return comparison_hash(self.turns, self.response_a.text, self.response_b.text, self.category)


@dataclass(frozen=True)
class ImportProblem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


class ImportFileError(ValueError):
    """The file as a whole cannot be imported; ``problems`` lists every bad line."""

    def __init__(self, filename: str, problems: list[ImportProblem]):
        self.filename = filename
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{filename}: {len(problems)} invalid row(s): {shown}{more}")


class RowError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def turns_hash(turns: tuple[Turn, ...] | list[Turn]) -> str:
    canonical = json.dumps([t.as_dict() for t in turns], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def comparison_hash(turns, text_a: str, text_b: str, category: str) -> str:
    canonical = json.dumps(
        [[t.as_dict() for t in turns], text_a, text_b, str(category)], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_hh_dialogue(text: str, field_name: str) -> list[Turn]:
    """Split an HH dialogue string into turns; the inverse of ``format_hh_dialogue``."""
    if not isinstance(text, str):
        raise RowError(field_name, f"must be a string, got {type(text).__name__}")
    parts = HH_TURN.split(text)
    if parts[0] != "" or len(parts) < 3:
        raise RowError(field_name, "must start with '\\n\\nHuman: ' and alternate Human/Assistant turns")
    turns = [Turn(HH_ROLES[name], content) for name, content in zip(parts[1::2], parts[2::2], strict=True)]
    if turns[-1].role is not Role.ASSISTANT:
        raise RowError(field_name, "must end with an Assistant turn (the response)")
    return turns


def format_hh_dialogue(turns: list[Turn] | tuple[Turn, ...], response: str) -> str:
    """Write turns plus a final Assistant response in the Anthropic HH text format."""
    body = "".join(f"\n\n{HH_NAMES[Role(t.role)]}: {t.content}" for t in turns)
    return f"{body}\n\nAssistant: {response}"


def _read_lines(stream: IO[bytes], filename: str) -> Iterator[tuple[int, str | ImportProblem]]:
    """Yield (line number, decoded text or a problem) for each non-blank line."""
    head = stream.read(2)
    stream.seek(0) if stream.seekable() else None
    if head == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=stream if stream.seekable() else io.BytesIO(head + stream.read()))
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            # Swallow the rest of the oversized line without holding it in memory.
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(MAX_LINE_BYTES)
            yield number, ImportProblem(number, "", f"line is longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, ImportProblem(number, "", f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})")
            continue
        if text.strip():
            yield number, text


def _text(value: Any, field_name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RowError(field_name, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RowError(field_name, "is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise RowError(field_name, f"is {len(value)} characters, over the {MAX_TEXT_CHARS} limit")
    return value


def _category(value: Any, field_name: str = "category") -> Category:
    try:
        return Category(value)
    except ValueError:
        raise RowError(field_name, f"must be one of {[c.value for c in Category]}, got {value!r}") from None


def parse_hh_row(obj: Any, line: int, category: Category, *, with_labels: bool, source: str) -> ComparisonIn:
    if not isinstance(obj, dict):
        raise RowError("", f"must be a JSON object, got {type(obj).__name__}")
    for key in ("chosen", "rejected"):
        if key not in obj:
            raise RowError(key, "is missing")
    chosen = parse_hh_dialogue(obj["chosen"], "chosen")
    rejected = parse_hh_dialogue(obj["rejected"], "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise RowError("rejected", "does not share its context (all turns but the last) with 'chosen'")
    _text(chosen[-1].content, "chosen")
    _text(rejected[-1].content, "rejected")
    if chosen[-1].content == rejected[-1].content:
        raise RowError("rejected", "is identical to 'chosen': nothing to compare")
    labels = (LabelIn(preferred="A", source_annotator=source),) if with_labels else ()
    return ComparisonIn(
        line=line,
        turns=tuple(chosen[:-1]),
        response_a=ResponseIn(chosen[-1].content, model_version=source),
        response_b=ResponseIn(rejected[-1].content, model_version=source),
        category=category,
        external_id=str(line),
        labels=labels,
    )


def _response(obj: Any, field_name: str) -> ResponseIn:
    if isinstance(obj, str):
        return ResponseIn(_text(obj, field_name))
    if not isinstance(obj, dict):
        raise RowError(field_name, f"must be an object with 'text' (or a string), got {type(obj).__name__}")
    if "text" not in obj:
        raise RowError(f"{field_name}.text", "is missing")
    sampling = obj.get("sampling", {})
    if not isinstance(sampling, dict):
        raise RowError(f"{field_name}.sampling", f"must be an object, got {type(sampling).__name__}")
    generated_at = obj.get("generated_at")
    if generated_at is not None:
        try:
            generated_at = datetime.fromisoformat(str(generated_at).replace("Z", "+00:00"))
        except ValueError:
            raise RowError(f"{field_name}.generated_at", f"is not an ISO 8601 time: {generated_at!r}") from None
    model_version = obj.get("model_version", "")
    if not isinstance(model_version, str):
        raise RowError(f"{field_name}.model_version", "must be a string")
    return ResponseIn(_text(obj["text"], f"{field_name}.text"), model_version, sampling, generated_at)


def parse_turns(value: Any, field_name: str = "prompt") -> tuple[Turn, ...]:
    if isinstance(value, str):
        return (Turn(Role.USER, _text(value, field_name)),)
    if not isinstance(value, list) or not value:
        raise RowError(field_name, "must be a non-empty list of {role, content} turns (or a string)")
    turns = []
    for i, item in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(item, dict):
            raise RowError(where, "must be an object with 'role' and 'content'")
        try:
            role = Role(item.get("role"))
        except ValueError:
            raise RowError(f"{where}.role", f"must be one of {[r.value for r in Role]}, got {item.get('role')!r}") from None
        turns.append(Turn(role, _text(item.get("content"), f"{where}.content")))
    if turns[-1].role is not Role.USER:
        raise RowError(f"{field_name}[{len(turns) - 1}].role", "the last turn must be the user's")
    return tuple(turns)


def parse_native_row(obj: Any, line: int, default_category: Category | None) -> ComparisonIn:
    if not isinstance(obj, dict):
        raise RowError("", f"must be a JSON object, got {type(obj).__name__}")
    for key in ("prompt", "response_a", "response_b"):
        if key not in obj:
            raise RowError(key, "is missing")
    if "category" in obj:
        category = _category(obj["category"])
    elif default_category is not None:
        category = default_category
    else:
        raise RowError("category", "is missing (and no default category was given)")
    a, b = _response(obj["response_a"], "response_a"), _response(obj["response_b"], "response_b")
    if a.text == b.text:
        raise RowError("response_b", "is identical to response_a: nothing to compare")
    external_id = obj.get("id", "")
    if not isinstance(external_id, str | int):
        raise RowError("id", "must be a string or an integer")
    return ComparisonIn(
        line=line,
        turns=parse_turns(obj["prompt"]),
        response_a=a,
        response_b=b,
        category=category,
        external_id=str(external_id),
    )


@dataclass
class ParseResult:
    rows: list[ComparisonIn]
    problems: list[ImportProblem]
    lines_read: int


def parse_file(
    stream: IO[bytes],
    *,
    fmt: str,
    filename: str = "upload",
    category: Category | str | None = None,
    with_labels: bool = True,
    source: str = "",
) -> ParseResult:
    """Parse every line, collecting all problems (not just the first) with line and field.

    Duplicate rows inside the file are problems too: the second names the first.
    """
    default_category = Category(category) if category else None
    if fmt == "hh" and default_category is None:
        raise ValueError("HH files carry no category: choose helpfulness or safety")
    source = source or ("anthropic-hh" if fmt == "hh" else "import")
    rows: list[ComparisonIn] = []
    problems: list[ImportProblem] = []
    seen: dict[str, int] = {}
    lines_read = 0
    for number, text in _read_lines(stream, filename):
        lines_read = number
        if isinstance(text, ImportProblem):
            problems.append(text)
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(ImportProblem(number, "", f"malformed JSON: {exc.msg} at column {exc.colno}"))
            continue
        try:
            if fmt == "hh":
                row = parse_hh_row(obj, number, default_category, with_labels=with_labels, source=source)
            elif fmt == "native":
                row = parse_native_row(obj, number, default_category)
            else:
                raise ValueError(f"unknown import format {fmt!r}; use 'hh' or 'native'")
        except RowError as exc:
            problems.append(ImportProblem(number, exc.field, str(exc)))
            continue
        first = seen.setdefault(row.content_hash, number)
        if first != number:
            problems.append(ImportProblem(number, "", f"duplicate of line {first}"))
            continue
        rows.append(row)
    if lines_read == 0:
        problems.append(ImportProblem(0, "", "the file is empty"))
    return ParseResult(rows, problems, lines_read)
