"""Labelled data for export tests: comparisons with labels from users and imported raters."""

from __future__ import annotations

import json
from pathlib import Path

from annotation.domain import Category, safety_bin
from annotation.models import Label
from tests.factories import BatchFactory, UserFactory, make_comparison


def label(
    comparison, *, annotator=None, rater="", preferred="A", strength="better", tags=None, **kw
) -> Label:
    fields = {}
    if tags:
        fields = {
            "safety_a": tags[0],
            "safety_b": tags[1],
            "safety_bin": safety_bin(preferred, *tags).value,
        }
    return Label.objects.create(
        comparison=comparison,
        annotator=annotator,
        source_annotator=rater,
        preferred=preferred,
        strength=strength,
        left=kw.pop("left", "A"),
        time_spent_ms=kw.pop("time_spent_ms", 12_000),
        **fields,
        **kw,
    )


def labelled_data():
    """Two batches: helpfulness with 3 annotators per comparison, safety with one."""
    users = [UserFactory(username=f"rater{i}", role="annotator") for i in range(3)]
    help_batch = BatchFactory(name="week-1", labels_per_comparison=3)
    safety_batch = BatchFactory(name="week-2")
    for i in range(4):
        c = make_comparison(help_batch)
        label(c, annotator=users[0], preferred="A", strength="significantly_better")
        label(c, annotator=users[1], preferred="A" if i % 2 else "B", strength="slightly_better")
        label(c, annotator=users[2], preferred="A", strength="negligibly_better_or_unsure")
    for i in range(3):
        c = make_comparison(safety_batch, category=Category.SAFETY)
        label(c, annotator=users[i], preferred="B", strength="better", tags=("unsafe", "safe"))
    c = make_comparison(safety_batch, category=Category.SAFETY)
    label(c, rater="anthropic-hh", preferred="A", strength="")
    return help_batch, safety_batch, users


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
