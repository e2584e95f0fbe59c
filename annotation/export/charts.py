"""Server-side SVG charts for the Data page: no JavaScript, no CDN."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    color: str


def stacked_bars_svg(
    title: str, bars: list[tuple[str, dict[str, int]]], series: list[Series], *, width: int = 640
) -> str:
    """Horizontal stacked bars, one per batch, segments per series, with a legend.

    Each bar is scaled to its own total (shares), and labelled with the count, so batches
    of different sizes compare by distribution.
    """
    row_h, label_w, top = 26, 140, 30
    legend_h = 22
    plot_w = width - label_w - 70
    height = top + row_h * max(len(bars), 1) + legend_h + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" class="chart">',
        f'<text x="0" y="18" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]
    if not bars:
        out.append(f'<text x="0" y="{top + 16}" font-size="12">No labels yet.</text>')
    for i, (name, counts) in enumerate(bars):
        y = top + i * row_h
        total = sum(counts.get(s.key, 0) for s in series)
        out.append(
            f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(name[:22])}</text>'
        )
        x = float(label_w)
        for s in series:
            n = counts.get(s.key, 0)
            if not n:
                continue
            w = plot_w * n / total
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{s.color}">'
                f"<title>{escape(name)} · {escape(s.label)}: {n}</title></rect>"
            )
            x += w
        out.append(f'<text x="{label_w + plot_w + 6}" y="{y + 15}" font-size="12">{total}</text>')
    y = top + row_h * max(len(bars), 1) + 6
    x = 0.0
    for s in series:
        out.append(f'<rect x="{x:.0f}" y="{y}" width="12" height="12" fill="{s.color}"/>')
        out.append(f'<text x="{x + 16:.0f}" y="{y + 11}" font-size="11">{escape(s.label)}</text>')
        x += 16 + 7 * len(s.label) + 14
    out.append("</svg>")
    return "".join(out)
