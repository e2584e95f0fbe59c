"""Prompts that fit the model's context: checked once, before any sampling. Django-free.

Placeholder for the policy type; the function follows.
"""

from __future__ import annotations

from typing import Literal

# What a stage does with a prompt that, plus ``max_new_tokens``, exceeds the model's context:
# keep the end of the dialogue (as reward training does) or leave the prompt out.
OverlongPolicy = Literal["truncate_left", "skip"]
