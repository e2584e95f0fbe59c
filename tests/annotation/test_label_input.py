"""The API's label input: the hand-written parser answers exactly as the documented
``LabelInputSerializer`` would (same accepted values, same fields named in errors)."""

import pytest
from rest_framework import serializers

from annotation.queue import rules
from annotation.serializers import LabelInputSerializer, label_input_from_data

CASES = [
    {"preferred_side": "left", "strength": "better"},
    {"preferred_side": "right", "strength": "slightly_better", "comment": "  fine  "},
    {
        "preferred": "A",
        "strength": "significantly_better",
        "safety_a": "safe",
        "safety_b": "unsafe",
    },
    {"preferred": "B", "strength": "negligibly_better_or_unsure", "time_spent_ms": 1234},
    {"preferred_side": "left", "strength": "better", "time_spent_ms": "99"},
    {"preferred_side": "left", "strength": "better", "time_spent_ms": 12.0},
    {"preferred_side": "left", "strength": "better", "time_spent_ms": None},
    {"preferred_side": "left", "strength": "better", "safety_left": "safe", "safety_right": "safe"},
    {"preferred_side": "left", "strength": "better", "unknown_field": 1},
    {"preferred_side": "left", "strength": "better", "comment": 5},
    # errors
    {},
    {"strength": "better"},
    {"preferred_side": "left"},
    {"preferred_side": "up", "strength": "better"},
    {"preferred_side": "left", "strength": "much"},
    {"preferred_side": None, "strength": "better"},
    {"preferred_side": True, "strength": "better"},
    {"preferred_side": ["left"], "strength": "better"},
    {"preferred": "C", "strength": "better"},
    {"preferred_side": "left", "preferred": "A", "strength": "better"},
    {"preferred_side": "left", "safety_a": "safe", "strength": "better"},
    {"preferred_side": "left", "strength": "better", "safety_left": "maybe"},
    {"preferred_side": "left", "strength": "better", "comment": None},
    {"preferred_side": "left", "strength": "better", "comment": ["x"]},
    {"preferred_side": "left", "strength": "better", "comment": "x" * 5001},
    {"preferred_side": "left", "strength": "better", "comment": " " + "x" * 5000 + " "},
    {"preferred_side": "left", "strength": "better", "comment": "a\x00b"},  # NUL
    {"preferred_side": "left", "strength": "better", "comment": "a\ud800b"},  # lone surrogate
    {"preferred_side": "left", "strength": "better", "comment": "\x00" + "x" * 5000},  # both
    {"preferred_side": "left", "strength": "better", "time_spent_ms": -1},
    {"preferred_side": "left", "strength": "better", "time_spent_ms": 24 * 3600 * 1000 + 1},
    {"preferred_side": "left", "strength": "better", "time_spent_ms": "soon"},
    {"preferred_side": "left", "strength": "better", "time_spent_ms": 12.5},
    {"preferred_side": "left", "strength": "better", "time_spent_ms": True},
    {"preferred_side": "up", "strength": "much", "time_spent_ms": -5},
    ["preferred_side", "left"],
]


def _serializer_answer(data):
    serializer = LabelInputSerializer(data=data)
    if not serializer.is_valid():
        return "error", serializer.errors
    return "ok", serializer.to_label_input(idempotency_key="k")


def _parser_answer(data):
    try:
        return "ok", label_input_from_data(data, idempotency_key="k")
    except serializers.ValidationError as exc:
        return "error", exc.detail


@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_parser_answers_as_the_serializer(data):
    expected_kind, expected = _serializer_answer(data)
    kind, got = _parser_answer(data)
    assert kind == expected_kind
    if kind == "ok":
        assert got == expected
        assert isinstance(got, rules.LabelInput | rules.ShownLabelInput)
    else:
        assert set(got) == set(expected)  # the same fields are named
        for name, messages in expected.items():
            assert [str(m) for m in got[name]] == [str(m) for m in messages], name
