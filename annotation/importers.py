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
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, Any

from annotation.domain import Category, Role, Strength, Turn, strength_for_margin

MAX_LINE_BYTES = (
    1 << 20
)  # 1 MiB: one comparison is never this large; a bigger line is a broken file
MAX_TEXT_CHARS = 200_000

HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
HH_ROLES = {"Human": Role.USER, "Assistant": Role.ASSISTANT}
HH_NAMES = {Role.USER: "Human", Role.ASSISTANT: "Assistant"}
FORMATS = ("hh", "native", "pairwise", "pandalm")


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
        [[t.as_dict() for t in turns], text_a, text_b, str(category)],
        ensure_ascii=False,
        separators=(",", ":"),
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


def _read_lines(stream: IO[bytes], filename: str) -> Iterator[tuple[int, str | ImportProblem]]:
    """Yield (line number, decoded text or a problem) for each non-blank line."""
    head = stream.read(2)
    stream.seek(0) if stream.seekable() else None
    if head == b"\x1f\x8b":
        stream = gzip.GzipFile(
            fileobj=stream if stream.seekable() else io.BytesIO(head + stream.read())
        )
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
            yield (
                number,
                ImportProblem(
                    number,
                    "",
                    f"not valid UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})",
                ),
            )
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
        external_id=str(external_id),
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
    rater = annotator or f"{source}:line-{line}"
    return ComparisonIn(
        line=line,
        turns=parse_turns(obj["prompt"]),
        response_a=ResponseIn(chosen),
        response_b=ResponseIn(rejected),
        category=category,
        external_id=str(obj.get("comparison_id", line)),
        labels=(LabelIn(preferred="A", source_annotator=rater, strength=_strength(obj)),),
    )


def _pair_key(row: ComparisonIn) -> str:
    """The same two responses to the same prompt, whichever way round."""
    texts = sorted([row.response_a.text, row.response_b.text])
    return comparison_hash(row.turns, texts[0], texts[1], row.category)


def _merge_pairwise(rows: list[ComparisonIn], problems: list[ImportProblem]) -> list[ComparisonIn]:
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
            problems.append(
                ImportProblem(
                    row.line, "annotator", f"duplicate of line {seen}: same pair, same annotator"
                )
            )
            continue
        raters[key][label.source_annotator] = row.line
        preferred = "A" if row.response_a.text == first.response_a.text else "B"
        merged[key] = replace(first, labels=(*first.labels, replace(label, preferred=preferred)))
    return list(merged.values())


PANDALM_CHOICES = {1: "A", 2: "B"}
ANNOTATOR_KEY = re.compile(r"annotator\d+")
MAX_JSON_ARRAY_BYTES = 512 << 20


def _json_array_items(stream: IO[bytes]) -> Iterator[tuple[int, int, Any]]:
    """Yield (line, index, value) for each element of a JSON array file.

    Decodes element by element so every error names the line it starts on.
    """
    raw = stream.read(MAX_JSON_ARRAY_BYTES + 1)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) > MAX_JSON_ARRAY_BYTES:
        raise RowError("", f"the file is larger than {MAX_JSON_ARRAY_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RowError("", f"not valid UTF-8 at byte {exc.start}") from None
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
            raise RowError(
                "", f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
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
    prompt = instruction + (f"\n\n{extra}" if extra.strip() else "")
    return ComparisonIn(
        line=line,
        turns=(Turn(Role.USER, prompt),),
        response_a=ResponseIn(a, model_version=models[0]),
        response_b=ResponseIn(b, model_version=models[1]),
        category=category,
        external_id=str(idx),
        labels=tuple(labels),
        metadata={
            k: obj[k]
            for k in ("idx", "motivation_app", "cmp_key", "instruction", "input", *annotators)
            if k in obj
        },
    )


def _parse_pandalm(stream: IO[bytes], category: Category) -> ParseResult:
    rows: list[ComparisonIn] = []
    problems: list[ImportProblem] = []
    seen: dict[str, int] = {}
    count = 0
    try:
        for line, index, obj in _json_array_items(stream):
            count += 1
            try:
                row = parse_pandalm_row(obj, line, category)
            except RowError as exc:
                problems.append(ImportProblem(line, exc.field, f"item {index}: {exc}"))
                continue
            first = seen.setdefault(row.content_hash, line)
            if first != line:
                problems.append(
                    ImportProblem(line, "", f"item {index}: duplicate of the item on line {first}")
                )
                continue
            rows.append(row)
    except RowError as exc:
        problems.append(ImportProblem(0, exc.field, str(exc)))
    if count == 0 and not problems:
        problems.append(ImportProblem(0, "", "the array is empty"))
    return ParseResult(rows, problems, count)


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
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "pandalm":
        return _parse_pandalm(stream, default_category or Category.HELPFULNESS)
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
            problems.append(
                ImportProblem(number, "", f"malformed JSON: {exc.msg} at column {exc.colno}")
            )
            continue
        try:
            if fmt == "hh":
                row = parse_hh_row(
                    obj, number, default_category, with_labels=with_labels, source=source
                )
            elif fmt == "native":
                row = parse_native_row(obj, number, default_category)
            else:
                row = parse_pairwise_row(obj, number, default_category, source=source)
        except RowError as exc:
            problems.append(ImportProblem(number, exc.field, str(exc)))
            continue
        if fmt == "pairwise":
            rows.append(row)  # rows on one pair are folded below, not duplicates
            continue
        first = seen.setdefault(row.content_hash, number)
        if first != number:
            problems.append(ImportProblem(number, "", f"duplicate of line {first}"))
            continue
        rows.append(row)
    if fmt == "pairwise":
        rows = _merge_pairwise(rows, problems)
        problems.sort(key=lambda p: p.line)
    if lines_read == 0:
        problems.append(ImportProblem(0, "", "the file is empty"))
    return ParseResult(rows, problems, lines_read)
