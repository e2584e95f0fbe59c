"""Template filters for the annotation pages."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def guideline_html(body: str) -> SafeString:
    """Render a guideline's plain text: blank lines separate paragraphs, '- ' starts a bullet.

    Every piece of text is escaped; only the paragraph and list markup is ours.
    """
    html = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        text: list[str] = []
        items: list[str] = []
        for line in [*lines, ""]:  # the sentinel flushes whatever is pending
            if line.startswith("- "):
                if text:
                    html.append(format_html("<p>{}</p>", " ".join(text)))
                    text = []
                items.append(line[2:])
                continue
            if items:
                html.append(
                    format_html(
                        "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((i,) for i in items))
                    )
                )
                items = []
            if line:
                text.append(line)
        if text:
            html.append(format_html("<p>{}</p>", " ".join(text)))
    return mark_safe("".join(html))  # noqa: S308 - every part above went through format_html


@register.filter
def sampling_summary(sampling: dict | None) -> str:
    """'T 0.7 · top_p 0.9' from a response's sampling settings (temperature shortened to T)."""
    if not sampling:
        return ""
    short = {"temperature": "T", "max_new_tokens": "max"}
    return " · ".join(f"{short.get(key, key)} {value}" for key, value in sampling.items())
