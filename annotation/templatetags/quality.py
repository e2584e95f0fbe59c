"""Template filters for the Quality page: numbers that may be unknown (None reads "—")."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 0) -> str:
    """0.953 → "95%" (``|percent:1`` → "95.3%"); None → "—"."""
    return "—" if value is None else f"{100 * value:.{int(digits)}f}%"


@register.filter
def fixed(value: float | None, digits: int = 2) -> str:
    """0.87746 → "0.88"; None → "—"."""
    return "—" if value is None else f"{value:.{int(digits)}f}"
