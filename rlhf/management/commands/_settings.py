"""What the rlhf commands share: ``--set KEY=VALUE`` pairs and validation errors as text."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from rlhf.settings import settings_from_pairs


def settings_from_options(items: list[str], base: dict | None = None) -> dict:
    """Nested settings JSON from ``--set`` items (``ppo.steps=8``; JSON values, else text)."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"Expected KEY=VALUE, got {item!r}.")
        try:
            pairs.append((key, json.loads(value)))
        except json.JSONDecodeError:
            pairs.append((key, value))
    return settings_from_pairs(pairs, base)


def validation_text(exc: ValidationError) -> str:
    """``settings.ppo.steps: Input should be …; batches: …`` — each error with its field."""
    if not hasattr(exc, "error_dict"):
        return "; ".join(exc.messages)
    return "; ".join(
        f"{field}: {message}"
        for field, messages in exc.message_dict.items()
        for message in messages
    )
