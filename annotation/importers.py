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

- ``pairwise``: the pairwise training format Pairwise exports (TRL's conversational
  preference rows): ``{"prompt": [turns], "chosen": [{"role": "assistant", "content": ...}],
  "rejected": [...], "margin": 0.67, "strength": "better", "category": ..., "annotator": ...}``;
  ``chosen`` / ``rejected`` may also be plain strings. Rows on the same pair (either way
  round) become one comparison with one label per row, so export → import → export gives
  the same pairs.
- ``pandalm``: a JSON array of multi-annotator rows like PandaLM's test set,
  ``{"idx", "instruction", "input", "response1", "response2", "cmp_key",
  "annotator1": 0|1|2, ...}``: one comparison per row (response 1 is A), one label per
  annotator (``source_annotator`` "pandalm:annotator1"…). 1 prefers A, 2 prefers B; 0 is a
  tie, stored as strength "negligibly better / unsure" on a side picked by a fixed coin
  (a hash of idx and annotator, so ties favour neither position) with comment ``tie``.
  The raw annotations stay in the comparison's metadata.

Demonstrations (the ideal response to a dialogue, Llama 2's SFT data) come in two shapes:

- a JSONL row ``{"id": optional, "turns" | "dialogue" | "prompt": [turns] or a string,
  "response": "...", "provenance": {optional object, kept}}`` (the dialogue ends with the
  user's turn), or TRL's SFT row ``{"messages": [turns..., {"role": "assistant", ...}]}``;
- an HH row, whose ``chosen`` transcript is one: its last Assistant turn is the response,
  the turns before it the dialogue (``rejected`` is not read).

``parse_file``'s ``kind`` says which a file holds: ``comparisons``, ``demonstrations`` (HH
rows read as their chosen transcript), or ``auto``: a JSONL line with ``response`` (or
``messages``) and none of ``chosen``, ``rejected``, ``response_a``, ``response_b`` is a
demonstration (as is one with ``turns`` or ``dialogue``, keys no comparison format has),
any other a comparison of the file's format, so one file may hold both.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, Any

from annotation.domain import (
    Category,
    Role,
    Strength,
    Turn,
    strength_for_margin,
    text_problem_in,
)

MAX_LINE_BYTES = (
    1 << 20
)  # 1 MiB: one comparison is never this large; a bigger line is a broken file
MAX_TEXT_CHARS = 200_000
MAX_NAME_CHARS = 200  # model versions, ids and rater names: the length of their columns
# A row is an object of lists of objects (depth 3, a few more in ``sampling``). Python's
# json recurses once per level and fails with RecursionError near 1,000, so deeper lines
# are refused before they are parsed.
MAX_JSON_DEPTH = 32
UTF8_BOM = b"\xef\xbb\xbf"

HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
HH_ROLES = {"Human": Role.USER, "Assistant": Role.ASSISTANT}
HH_NAMES = {Role.USER: "Human", Role.ASSISTANT: "Assistant"}
FORMATS = ("hh", "native", "pairwise", "pandalm")
# What a file holds (``parse_file``'s ``kind``): auto tells demonstrations by their keys.
KINDS = ("auto", "comparisons", "demonstrations")
DEMONSTRATION_FORMATS = ("native", "hh")
DIALOGUE_KEYS = ("turns", "dialogue", "prompt")  # a demonstration's dialogue, by any name
COMPARISON_KEYS = ("chosen", "rejected", "response_a", "response_b")


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
    comment: str = ""  # e.g. TIE_COMMENT for a multi-annotator set's tie


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
        return comparison_hash(
            self.turns, self.response_a.text, self.response_b.text, self.category
        )


@dataclass(frozen=True)
class DemonstrationIn:
    """One demonstration as read: the dialogue (ending with the user's turn) and the ideal
    response; ``external_id`` and ``given`` (the row's own provenance object) are kept."""

    line: int
    turns: tuple[Turn, ...]
    response: str
    external_id: str = ""
    given: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return demonstration_hash(self.turns, self.response)


@dataclass(frozen=True)
class ImportProblem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        if not self.line and not self.field:
            return self.message  # about the file as a whole
        where = f"line {self.line}" + (f", field '{self.field}'" if self.field else "")
        return f"{where}: {self.message}"


class ImportFileError(ValueError):
    """The file cannot be imported: ``problems`` lists the first bad lines (at most the
    problem limit of ``parse_file``) and ``more_problems`` counts the ones not listed."""

    def __init__(
        self,
        filename: str,
        problems: list[ImportProblem],
        *,
        more_problems: int = 0,
        lines_unchecked: int = 0,
    ):
        self.filename = filename
        self.problems = problems
        self.more_problems = more_problems
        self.lines_unchecked = lines_unchecked
        total = len(problems) + more_problems
        unchecked = (
            f"; checking stopped there, {lines_unchecked} more line(s) not checked"
            if lines_unchecked
            else ""
        )
        if total == 1 and not unchecked:
            super().__init__(f"{filename}: {problems[0]}")
            return
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {total - 5} more)" if total > 5 else ""
        super().__init__(f"{filename}: {total} invalid row(s): {shown}{more}{unchecked}")

    @property
    def total(self) -> int:
        return len(self.problems) + self.more_problems


class ImportTooLargeError(ImportFileError):
    """The file is over the size limit given to ``parse_file``; nothing past it was read."""

    def __init__(self, filename: str, *, limit: int, decompressed: bool):
        self.limit = limit
        what = "once decompressed, the file is" if decompressed else "the file is"
        message = f"{what} larger than the import limit of {_size(limit)}"
        super().__init__(filename, [ImportProblem(0, "", message)])


def _size(n: int) -> str:
    return f"{n / (1 << 20):.4g} MiB" if n >= 1 << 20 else f"{n:,} bytes"


@dataclass
class ProblemList:
    """The first ``limit`` problems found (all when None) and how many there were in all,
    so that a file of a million bad lines costs a counter, not a million messages."""

    limit: int | None = None
    shown: list[ImportProblem] = field(default_factory=list)
    total: int = 0

    def add(self, problem: ImportProblem) -> None:
        self.total += 1
        if self.limit is None or len(self.shown) < self.limit:
            self.shown.append(problem)

    @property
    def more(self) -> int:
        return self.total - len(self.shown)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.total >= self.limit


class RowError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def turns_hash(turns: tuple[Turn, ...] | list[Turn]) -> str:
    canonical = json.dumps([t.as_dict() for t in turns], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def comparison_hash(turns, text_a: str, text_b: str, category: str) -> str:
    canonical = json.dumps(
        [[t.as_dict() for t in turns], text_a, text_b, str(category)],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def demonstration_hash(turns: tuple[Turn, ...] | list[Turn], response: str) -> str:
    """SHA-256 of (dialogue, response): the same demonstration twice in a batch is one."""
    canonical = json.dumps(
        [[t.as_dict() for t in turns], response], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_hh_dialogue(text: str, field_name: str) -> list[Turn]:
    """Split an HH dialogue string into turns; the inverse of ``format_hh_dialogue``."""
    if not isinstance(text, str):
        raise RowError(field_name, f"must be a string, got {type(text).__name__}")
    parts = HH_TURN.split(text)
    if parts[0] != "" or len(parts) < 3:
        raise RowError(
            field_name, "must start with '\\n\\nHuman: ' and alternate Human/Assistant turns"
        )
    turns = [
        Turn(HH_ROLES[name], content)
        for name, content in zip(parts[1::2], parts[2::2], strict=True)
    ]
    if turns[-1].role is not Role.ASSISTANT:
        raise RowError(field_name, "must end with an Assistant turn (the response)")
    return turns


def format_hh_dialogue(turns: list[Turn] | tuple[Turn, ...], response: str) -> str:
    """Write turns plus a final Assistant response in the Anthropic HH text format.

    HH has no system turn: one is written as a ``System:`` block, which HH readers
    (including ``parse_hh_dialogue``) fold into the turn before it.
    """
    body = "".join(f"\n\n{HH_NAMES.get(Role(t.role), 'System')}: {t.content}" for t in turns)
    return f"{body}\n\nAssistant: {response}"


class _LineReader:
    """The non-blank lines of a plain or gzip-compressed file, read one at a time (never
    more than one held in memory), a UTF-8 byte-order mark skipped.

    Iterating yields (line number, decoded text or a problem). Raises ``ImportFileError``
    where the file itself cannot be read on (gzip data that is corrupt or ends early:
    nothing of it is imported, even with ``skip_invalid``) and ``ImportTooLargeError`` past
    ``max_bytes``, of the file and of its data once decompressed.
    """

    def __init__(self, stream: IO[bytes], filename: str, *, max_bytes: int | None = None):
        if not stream.seekable():
            stream = io.BytesIO(stream.read() if max_bytes is None else stream.read(max_bytes + 1))
        if max_bytes is not None and stream.seek(0, io.SEEK_END) > max_bytes:
            raise ImportTooLargeError(filename, limit=max_bytes, decompressed=False)
        stream.seek(0)
        self.compressed = stream.read(2) == b"\x1f\x8b"
        stream.seek(0)
        self.stream: IO[bytes] | gzip.GzipFile = (
            gzip.GzipFile(fileobj=stream) if self.compressed else stream
        )
        self.filename = filename
        self.max_bytes = max_bytes
        self.number = 0  # lines read so far
        self.bytes_read = 0

    def _read(self, size: int, *, line: bool) -> bytes:
        try:
            raw = self.stream.readline(size) if line else self.stream.read(size)
        except EOFError:
            message = "the gzip data ends early (a truncated .gz file?)"
        except (gzip.BadGzipFile, zlib.error) as exc:
            message = f"the file starts like gzip but is not valid gzip data ({exc})"
        else:
            self.bytes_read += len(raw)
            if self.max_bytes is not None and self.bytes_read > self.max_bytes:
                raise ImportTooLargeError(
                    self.filename, limit=self.max_bytes, decompressed=self.compressed
                )
            return raw
        raise ImportFileError(self.filename, [ImportProblem(self.number + 1, "", message)])

    def __iter__(self) -> Iterator[tuple[int, str | ImportProblem]]:
        while raw := self._read(MAX_LINE_BYTES + 1, line=True):
            self.number += 1
            if self.number == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM) :]  # what spreadsheets and Windows tools write first
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                # Swallow the rest of the oversized line without holding it in memory.
                while raw and not raw.endswith(b"\n"):
                    raw = self._read(MAX_LINE_BYTES, line=True)
                yield (
                    self.number,
                    ImportProblem(self.number, "", f"line is longer than {MAX_LINE_BYTES} bytes"),
                )
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                byte = raw[exc.start : exc.start + 1]
                problem = f"not valid UTF-8 (byte {exc.start}: {byte!r})"
                yield self.number, ImportProblem(self.number, "", problem)
                continue
            if text.strip():
                yield self.number, text

    def count_rest(self) -> int:
        """How many lines are left to read (blank ones too), counted in blocks, not parsed."""
        count, last = 0, b"\n"
        while block := self._read(1 << 20, line=False):
            count, last = count + block.count(b"\n"), block[-1:]
        return count + (last != b"\n")


# A JSON string (to the end of the text when unterminated, so a match never backtracks)
# or one bracket.
_JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]++|\\(?:.|\Z))*+(?:"|\Z)|[\[\]{}]', re.DOTALL)


def nesting_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> int | None:
    """The offset in ``text`` where JSON arrays and objects first nest deeper than
    ``limit``, or None. Brackets inside strings do not count; the text need not be valid."""
    if text.count("[") + text.count("{") <= limit:
        return None  # never deeper than its number of opening brackets
    depth = 0
    for token in _JSON_STRING_OR_BRACKET.finditer(text):
        first = text[token.start()]
        if first in "[{":
            depth += 1
            if depth > limit:
                return token.start()
        elif first in "]}":
            depth -= 1
    return None


def json_error_message(exc: json.JSONDecodeError, *, with_line: bool = False) -> str:
    """json's message with where it happened, worded for people (some of json's messages
    end in "at": "Invalid control character at")."""
    where = f"line {exc.lineno}, column {exc.colno}" if with_line else f"column {exc.colno}"
    joiner = " " if exc.msg.endswith(" at") else " at "
    return f"malformed JSON: {exc.msg}{joiner}{where}"


def load_line(text: str) -> tuple[Any, str | None]:
    """(one line's JSON value, None), or (None, why it has none): nesting deeper than
    ``MAX_JSON_DEPTH`` (checked before parsing: json would recurse until RecursionError)
    or malformed JSON. Returned, not raised: a file of bad lines is mostly this path."""
    if (at := nesting_too_deep(text)) is not None:
        return None, f"JSON nested more than {MAX_JSON_DEPTH} levels deep (at column {at + 1})"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, json_error_message(exc)


def _text(value: Any, field_name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RowError(field_name, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RowError(field_name, "is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise RowError(field_name, f"is {len(value)} characters, over the {MAX_TEXT_CHARS} limit")
    return value


def _name(value: str, field_name: str) -> str:
    """A model version, id or rater name, which is stored in a column of bounded length."""
    if len(value) > MAX_NAME_CHARS:
        raise RowError(field_name, f"is {len(value)} characters, over the {MAX_NAME_CHARS} limit")
    return value


def _category(value: Any, field_name: str = "category") -> Category:
    try:
        return Category(value)
    except ValueError:
        raise RowError(
            field_name, f"must be one of {[c.value for c in Category]}, got {value!r}"
        ) from None


def parse_hh_row(
    obj: Any, line: int, category: Category, *, with_labels: bool, source: str
) -> ComparisonIn:
    if not isinstance(obj, dict):
        raise RowError("", f"must be a JSON object, got {type(obj).__name__}")
    for key in ("chosen", "rejected"):
        if key not in obj:
            raise RowError(key, "is missing")
    chosen = parse_hh_dialogue(obj["chosen"], "chosen")
    rejected = parse_hh_dialogue(obj["rejected"], "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise RowError(
            "rejected", "does not share its context (all turns but the last) with 'chosen'"
        )
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
        raise RowError(
            field_name, f"must be an object with 'text' (or a string), got {type(obj).__name__}"
        )
    if "text" not in obj:
        raise RowError(f"{field_name}.text", "is missing")
    sampling = obj.get("sampling", {})
    if not isinstance(sampling, dict):
        raise RowError(
            f"{field_name}.sampling", f"must be an object, got {type(sampling).__name__}"
        )
    generated_at = obj.get("generated_at")
    if generated_at is not None:
        try:
            generated_at = datetime.fromisoformat(str(generated_at).replace("Z", "+00:00"))
        except ValueError:
            raise RowError(
                f"{field_name}.generated_at", f"is not an ISO 8601 time: {generated_at!r}"
            ) from None
    model_version = obj.get("model_version", "")
    if not isinstance(model_version, str):
        raise RowError(f"{field_name}.model_version", "must be a string")
    _name(model_version, f"{field_name}.model_version")
    return ResponseIn(
        _text(obj["text"], f"{field_name}.text"), model_version, sampling, generated_at
    )


def parse_turns(value: Any, field_name: str = "prompt") -> tuple[Turn, ...]:
    if isinstance(value, str):
        return (Turn(Role.USER, _text(value, field_name)),)
    if not isinstance(value, list) or not value:
        raise RowError(
            field_name, "must be a non-empty list of {role, content} turns (or a string)"
        )
    turns = []
    for i, item in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(item, dict):
            raise RowError(where, "must be an object with 'role' and 'content'")
        try:
            role = Role(item.get("role"))
        except ValueError:
            raise RowError(
                f"{where}.role",
                f"must be one of {[r.value for r in Role]}, got {item.get('role')!r}",
            ) from None
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
        external_id=_name(str(external_id), "id"),
    )


TIE_COMMENT = "tie"


def _completion(value: Any, field_name: str) -> str:
    """A response given as a string or as TRL's one-message assistant list."""
    if isinstance(value, str):
        return _text(value, field_name)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        message = value[0]
        if message.get("role") != Role.ASSISTANT:
            raise RowError(
                f"{field_name}[0].role", f"must be 'assistant', got {message.get('role')!r}"
            )
        return _text(message.get("content"), f"{field_name}[0].content")
    raise RowError(
        field_name, "must be a string or a list of one {role: assistant, content} message"
    )


def _strength(obj: dict[str, Any]) -> str:
    """The strength named in the row, else the one its margin stands for (margin 0: unrated)."""
    strength = obj.get("strength")
    if strength is not None:
        try:
            return Strength(strength).value
        except ValueError:
            raise RowError(
                "strength",
                f"must be one of {[s.value for s in Strength]} or null, got {strength!r}",
            ) from None
    margin = obj.get("margin")
    if margin is None:
        return ""
    if isinstance(margin, bool) or not isinstance(margin, int | float):
        raise RowError("margin", f"must be a number, got {type(margin).__name__}")
    try:
        rated = strength_for_margin(margin)
    except ValueError:
        raise RowError(
            "margin", f"{margin!r} is not in the margin table (1, 2/3, 1/3, 0); give 'strength'"
        ) from None
    return rated.value if rated else ""


def parse_pairwise_row(
    obj: Any, line: int, default_category: Category | None, *, source: str
) -> ComparisonIn:
    """One pairwise-format row: a comparison whose response A is the chosen one, and its label."""
    if not isinstance(obj, dict):
        raise RowError("", f"must be a JSON object, got {type(obj).__name__}")
    for key in ("prompt", "chosen", "rejected"):
        if key not in obj:
            raise RowError(key, "is missing")
    if "category" in obj and obj["category"] is not None:
        category = _category(obj["category"])
    elif default_category is not None:
        category = default_category
    else:
        raise RowError("category", "is missing (and no default category was given)")
    chosen, rejected = (
        _completion(obj["chosen"], "chosen"),
        _completion(obj["rejected"], "rejected"),
    )
    if chosen == rejected:
        raise RowError("rejected", "is identical to 'chosen': nothing to compare")
    annotator = obj.get("annotator")
    if annotator is not None and not isinstance(annotator, str):
        raise RowError("annotator", "must be a string")
    rater = _name(annotator or f"{source}:line-{line}", "annotator")
    return ComparisonIn(
        line=line,
        turns=parse_turns(obj["prompt"]),
        response_a=ResponseIn(chosen),
        response_b=ResponseIn(rejected),
        category=category,
        external_id=_name(str(obj.get("comparison_id", line)), "comparison_id"),
        labels=(LabelIn(preferred="A", source_annotator=rater, strength=_strength(obj)),),
    )


def _pair_key(row: ComparisonIn) -> str:
    """The same two responses to the same prompt, whichever way round."""
    texts = sorted([row.response_a.text, row.response_b.text])
    return comparison_hash(row.turns, texts[0], texts[1], row.category)


def _merge_pairwise(rows: list[ComparisonIn], problems: ProblemList) -> list[ComparisonIn]:
    """Fold rows on the same pair into one comparison (first row's orientation), one label per row."""
    merged: dict[str, ComparisonIn] = {}
    raters: dict[str, dict[str, int]] = {}
    for row in rows:
        key = _pair_key(row)
        label = row.labels[0]
        first = merged.get(key)
        if first is None:
            merged[key] = row
            raters[key] = {label.source_annotator: row.line}
            continue
        if (seen := raters[key].get(label.source_annotator)) is not None:
            problems.add(
                ImportProblem(
                    row.line, "annotator", f"duplicate of line {seen}: same pair, same annotator"
                )
            )
            continue
        raters[key][label.source_annotator] = row.line
        preferred = "A" if row.response_a.text == first.response_a.text else "B"
        merged[key] = replace(first, labels=(*first.labels, replace(label, preferred=preferred)))
    return list(merged.values())


def is_demonstration_row(obj: Any) -> bool:
    """``kind="auto"``'s rule: a row with ``response`` (or TRL's ``messages``) and no key
    of a comparison is a demonstration; so is one with ``turns`` or ``dialogue`` (which no
    comparison format has), so that a row missing its response is told so."""
    return (
        isinstance(obj, dict)
        and any(key in obj for key in ("response", "messages", "turns", "dialogue"))
        and not any(key in obj for key in COMPARISON_KEYS)
    )


def parse_demonstration_row(obj: Any, line: int) -> DemonstrationIn:
    """One demonstration row: ``{"turns" | "dialogue" | "prompt", "response"}`` or TRL's
    ``{"messages": [..., {"role": "assistant", ...}]}``."""
    if not isinstance(obj, dict):
        raise RowError("", f"must be a JSON object, got {type(obj).__name__}")
    if any(key in obj for key in ("response_a", "response_b", "chosen")):
        raise RowError("", "is a comparison (it has two responses), not a demonstration")
    if "messages" in obj and "response" not in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or len(messages) < 2:
            raise RowError("messages", "must be a list of turns ending with the assistant's")
        last = messages[-1]
        where = f"messages[{len(messages) - 1}]"
        if not isinstance(last, dict) or last.get("role") != Role.ASSISTANT:
            raise RowError(
                f"{where}.role", "the last message must be the assistant's (the response)"
            )
        turns = parse_turns(messages[:-1], "messages")
        response = _text(last.get("content"), f"{where}.content")
    else:
        names = [key for key in DIALOGUE_KEYS if key in obj]
        if not names:
            raise RowError("turns", "is missing (the dialogue: 'turns', 'dialogue' or 'prompt')")
        if len(names) > 1:
            raise RowError(names[1], f"gives the dialogue a second time (also '{names[0]}')")
        if "response" not in obj:
            raise RowError("response", "is missing")
        turns = parse_turns(obj[names[0]], names[0])
        response = _completion(obj["response"], "response")
    external_id = obj.get("id", "")
    if isinstance(external_id, bool) or not isinstance(external_id, str | int):
        raise RowError("id", "must be a string or an integer")
    given = obj.get("provenance", {})
    if not isinstance(given, dict):
        raise RowError("provenance", f"must be an object, got {type(given).__name__}")
    return DemonstrationIn(line, turns, response, _name(str(external_id), "id"), given)


def parse_hh_demonstration_row(obj: Any, line: int) -> DemonstrationIn:
    """An HH row's chosen transcript as a demonstration: its last Assistant turn is the
    response, the turns before it the dialogue."""
    if not isinstance(obj, dict):
        raise RowError("", f"must be a JSON object, got {type(obj).__name__}")
    if "chosen" not in obj:
        raise RowError("chosen", "is missing")
    chosen = parse_hh_dialogue(obj["chosen"], "chosen")
    if len(chosen) < 2 or chosen[-2].role is not Role.USER:
        raise RowError("chosen", "needs a Human turn before its last Assistant turn")
    response = _text(chosen[-1].content, "chosen")
    return DemonstrationIn(line, tuple(chosen[:-1]), response, str(line))


PANDALM_CHOICES = {1: "A", 2: "B"}
ANNOTATOR_KEY = re.compile(r"annotator\d+")
MAX_JSON_ARRAY_BYTES = 512 << 20


def _json_array_items(
    stream: IO[bytes], filename: str, *, max_bytes: int | None = None
) -> Iterator[tuple[int, int, Any]]:
    """Yield (line, index, value) for each element of a JSON array file.

    Decodes element by element so every error names the line it starts on. The whole file
    is held in memory (it is one JSON value), so it is refused past ``max_bytes`` (and past
    ``MAX_JSON_ARRAY_BYTES``), as is gzip data that is corrupt or ends early and nesting
    deeper than ``MAX_JSON_DEPTH`` inside an item.
    """
    limit = MAX_JSON_ARRAY_BYTES if max_bytes is None else min(max_bytes, MAX_JSON_ARRAY_BYTES)
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise ImportTooLargeError(filename, limit=limit, decompressed=False)
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
                raw = unzipped.read(limit + 1)
        except EOFError:
            message = "the gzip data ends early (a truncated .gz file?)"
            raise ImportFileError(filename, [ImportProblem(0, "", message)]) from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            message = f"the file starts like gzip but is not valid gzip data ({exc})"
            raise ImportFileError(filename, [ImportProblem(0, "", message)]) from None
        if len(raw) > limit:
            raise ImportTooLargeError(filename, limit=limit, decompressed=True)
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowError("", f"not valid UTF-8 at byte {exc.start}") from None
    if (at := nesting_too_deep(text, MAX_JSON_DEPTH + 1)) is not None:  # +1: the array
        line = text.count("\n", 0, at) + 1
        message = f"JSON nested more than {MAX_JSON_DEPTH} levels deep inside an item"
        raise ImportFileError(filename, [ImportProblem(line, "", message)])
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()
    if not text.startswith("[", pos):
        raise RowError("", "must be a JSON array of objects")
    pos = ws.match(text, pos + 1).end()
    index = 0
    if text.startswith("]", pos):
        return
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise RowError("", json_error_message(exc, with_line=True)) from None
        yield line, index, value
        index += 1
        pos = ws.match(text, pos).end()
        if text.startswith(",", pos):
            pos = ws.match(text, pos + 1).end()
        elif text.startswith("]", pos):
            return
        else:
            raise RowError(
                "", f"malformed JSON at line {text.count(chr(10), 0, pos) + 1}: expected ',' or ']'"
            )


def _tie_side(idx: Any, annotator: str) -> str:
    return "A" if hashlib.sha256(f"{idx}:{annotator}".encode()).digest()[0] % 2 == 0 else "B"


def parse_pandalm_row(obj: Any, line: int, category: Category) -> ComparisonIn:
    if not isinstance(obj, dict):
        raise RowError("", f"must be a JSON object, got {type(obj).__name__}")
    for key in ("instruction", "response1", "response2"):
        if key not in obj:
            raise RowError(key, "is missing")
    instruction = _text(obj["instruction"], "instruction")
    extra = _text(obj.get("input", ""), "input", allow_empty=True)
    a, b = _text(obj["response1"], "response1"), _text(obj["response2"], "response2")
    if a == b:
        raise RowError("response2", "is identical to response1: nothing to compare")
    annotators = sorted((k for k in obj if ANNOTATOR_KEY.fullmatch(k)), key=lambda k: int(k[9:]))
    if not annotators:
        raise RowError("annotator1", "is missing: a row needs at least one annotator's judgement")
    idx = obj.get("idx", line)
    labels = []
    for key in annotators:
        value = obj[key]
        if isinstance(value, bool) or value not in (0, 1, 2):
            raise RowError(key, f"must be 0 (tie), 1 (response1) or 2 (response2), got {value!r}")
        if value == 0:
            labels.append(
                LabelIn(
                    _tie_side(idx, key),
                    f"pandalm:{key}",
                    Strength.NEGLIGIBLY_BETTER_OR_UNSURE.value,
                    TIE_COMMENT,
                )
            )
        else:
            labels.append(LabelIn(PANDALM_CHOICES[value], f"pandalm:{key}"))
    cmp_key = obj.get("cmp_key", "")
    models = (
        cmp_key.split("_")
        if isinstance(cmp_key, str) and cmp_key.count("_") == 1
        else [str(cmp_key)] * 2
    )
    for model in models:
        _name(model, "cmp_key")
    prompt = instruction + (f"\n\n{extra}" if extra.strip() else "")
    return ComparisonIn(
        line=line,
        turns=(Turn(Role.USER, prompt),),
        response_a=ResponseIn(a, model_version=models[0]),
        response_b=ResponseIn(b, model_version=models[1]),
        category=category,
        external_id=_name(str(idx), "idx"),
        labels=tuple(labels),
        metadata={
            k: obj[k]
            for k in ("idx", "motivation_app", "cmp_key", "instruction", "input", *annotators)
            if k in obj
        },
    )


def _parse_pandalm(
    stream: IO[bytes],
    category: Category,
    filename: str,
    problems: ProblemList,
    max_bytes: int | None,
) -> ParseResult:
    rows: list[ComparisonIn] = []
    seen: dict[str, int] = {}
    count = 0
    try:
        for line, index, obj in _json_array_items(stream, filename, max_bytes=max_bytes):
            count += 1
            try:
                if (found := text_problem_in(obj)) is not None:
                    raise RowError(*found)
                row = parse_pandalm_row(obj, line, category)
            except RowError as exc:
                problems.add(ImportProblem(line, exc.field, f"item {index}: {exc}"))
                continue
            first = seen.setdefault(row.content_hash, line)
            if first != line:
                problems.add(
                    ImportProblem(line, "", f"item {index}: duplicate of the item on line {first}")
                )
                continue
            rows.append(row)
    except RowError as exc:
        problems.add(ImportProblem(0, exc.field, str(exc)))
    if count == 0 and not problems.total:
        problems.add(ImportProblem(0, "", "the array is empty"))
    return ParseResult(rows, problems.shown, count, problems.more)


@dataclass
class ParseResult:
    rows: list[ComparisonIn]
    problems: list[ImportProblem]  # the first ones found, at most the problem limit
    lines_read: int
    more_problems: int = 0  # found beyond the limit, counted but not listed
    lines_unchecked: int = 0  # left unread once the limit was reached (stop_at_max_problems)
    demonstrations: list[DemonstrationIn] = field(default_factory=list)

    @property
    def problems_total(self) -> int:
        return len(self.problems) + self.more_problems


def parse_file(
    stream: IO[bytes],
    *,
    fmt: str,
    filename: str = "upload",
    category: Category | str | None = None,
    with_labels: bool = True,
    source: str = "",
    max_bytes: int | None = None,
    max_problems: int | None = None,
    stop_at_max_problems: bool = False,
    kind: str = "auto",
) -> ParseResult:
    """Parse every line, collecting problems with line and field: all of them, or with
    ``max_problems`` the first ones and a count of the rest. Memory stays flat however bad
    the file is: lines are read one at a time and only valid rows are kept. With
    ``stop_at_max_problems`` (an all-or-nothing import, which has failed by then) checking
    stops at the limit and the lines left are only counted (``lines_unchecked``), so the
    work is bounded by the limit, not by the file (JSON lines only).

    Duplicate rows inside the file are problems too: the second names the first. Raises
    ``ImportTooLargeError`` past ``max_bytes`` (None: no limit) of the file or of its data
    once decompressed, and ``ImportFileError`` when the file itself cannot be read (bad
    gzip): such a file is refused whole.

    ``kind`` (``KINDS``): ``demonstrations`` reads every line as one (HH rows: their chosen
    transcript); ``auto`` reads a line as one when ``is_demonstration_row`` says so. They
    are returned in ``demonstrations``, checked and deduplicated like comparisons.
    """
    default_category = Category(category) if category else None
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; use one of {', '.join(FORMATS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "demonstrations" and fmt not in DEMONSTRATION_FORMATS:
        raise ValueError(
            f"demonstrations are imported from {' or '.join(DEMONSTRATION_FORMATS)} files, "
            f"not {fmt}"
        )
    problems = ProblemList(max_problems)
    if fmt == "pandalm":
        return _parse_pandalm(
            stream, default_category or Category.HELPFULNESS, filename, problems, max_bytes
        )
    if fmt == "hh" and default_category is None and kind != "demonstrations":
        raise ValueError("HH files carry no category: choose helpfulness or safety")
    source = source or ("anthropic-hh" if fmt == "hh" else "import")
    rows: list[ComparisonIn] = []
    demonstrations: list[DemonstrationIn] = []
    seen: dict[str, int] = {}
    seen_demonstrations: dict[str, int] = {}
    lines = _LineReader(stream, filename, max_bytes=max_bytes)
    lines_read = lines_unchecked = 0
    for number, text in lines:
        if stop_at_max_problems and problems.full:
            lines_unchecked = 1 + lines.count_rest()
            break
        lines_read = number
        if isinstance(text, ImportProblem):
            problems.add(text)
            continue
        obj, problem = load_line(text)
        if problem is not None:
            problems.add(ImportProblem(number, "", problem))
            continue
        if kind == "demonstrations" or (kind == "auto" and is_demonstration_row(obj)):
            try:
                if (found := text_problem_in(obj)) is not None:
                    raise RowError(*found)
                demonstration = (
                    parse_hh_demonstration_row(obj, number)
                    if fmt == "hh" and kind == "demonstrations"
                    else parse_demonstration_row(obj, number)
                )
            except RowError as exc:
                problems.add(ImportProblem(number, exc.field, str(exc)))
                continue
            first = seen_demonstrations.setdefault(demonstration.content_hash, number)
            if first != number:
                problems.add(ImportProblem(number, "", f"duplicate of line {first}"))
                continue
            demonstrations.append(demonstration)
            continue
        try:
            if (found := text_problem_in(obj)) is not None:
                raise RowError(*found)  # a NUL or lone surrogate, named by its field
            if fmt == "hh":
                row = parse_hh_row(
                    obj, number, default_category, with_labels=with_labels, source=source
                )
            elif fmt == "native":
                row = parse_native_row(obj, number, default_category)
            else:
                row = parse_pairwise_row(obj, number, default_category, source=source)
        except RowError as exc:
            problems.add(ImportProblem(number, exc.field, str(exc)))
            continue
        if fmt == "pairwise":
            rows.append(row)  # rows on one pair are folded below, not duplicates
            continue
        first = seen.setdefault(row.content_hash, number)
        if first != number:
            problems.add(ImportProblem(number, "", f"duplicate of line {first}"))
            continue
        rows.append(row)
    if fmt == "pairwise":
        rows = _merge_pairwise(rows, problems)
        problems.shown.sort(key=lambda p: p.line)
    if lines_read == 0 and not lines_unchecked:
        problems.add(ImportProblem(0, "", "the file is empty"))
    return ParseResult(
        rows, problems.shown, lines_read, problems.more, lines_unchecked, demonstrations
    )
