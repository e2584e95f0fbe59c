"""The preference-data vocabulary in annotation.domain: one margin table for training,
export and import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from annotation.domain import (
    DEFAULT_MARGIN_TABLE,
    MARGINS,
    MarginTable,
    Strength,
    margin_for,
    strength_for_margin,
)


def test_margin_tables_follow_llama2_table_28():
    assert [MARGINS[MarginTable.SMALL][s] for s in Strength] == pytest.approx([1, 2 / 3, 1 / 3, 0])
    assert [MARGINS[MarginTable.LARGE][s] for s in Strength] == [3, 2, 1, 0]
    assert all(v == 0 for v in MARGINS[MarginTable.NONE].values())
    assert DEFAULT_MARGIN_TABLE is MarginTable.SMALL


def test_margin_for_takes_the_strength_then_the_table_by_name():
    assert margin_for("", table="large") == 0.0  # unrated imported binary data
    assert margin_for(None) == 0.0
    assert margin_for("better", table="large") == 2.0
    assert margin_for(Strength.BETTER) == pytest.approx(2 / 3)  # the default table: small
    with pytest.raises(ValueError):
        margin_for("much_better")


def test_strength_for_margin_reads_back_what_margin_for_writes():
    for strength in Strength:
        margin = margin_for(strength)
        # A negligible preference and an unrated label both export 0: read back as unrated.
        assert strength_for_margin(margin) == (strength if margin else None)
    assert strength_for_margin(0.666667) is Strength.BETTER  # six decimals are enough
    assert strength_for_margin(2.0, table="large") is Strength.BETTER
    with pytest.raises(ValueError, match="not a margin of the small table"):
        strength_for_margin(0.5)


def test_the_training_code_and_the_exports_use_the_domain_table():
    from annotation.export import formats
    from modeling.ml.training import config

    assert formats.margin_for is margin_for and formats.MARGINS is MARGINS
    assert not hasattr(formats, "MARGIN_TABLES") and not hasattr(config, "MARGINS")
    assert config.MarginTable is MarginTable


def test_domain_imports_without_django():
    code = "import sys, annotation.domain; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
