"""Server-side SVG line charts: no JavaScript, no CDN. Plain Python."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"]


def line_chart_svg(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    width: int = 480,
    height: int = 280,
) -> str:
    """A labelled multi-series line chart as an inline ``<svg>`` string."""
    left, right, top, bottom = 56, 16, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for ys in series.values() for v in ys]
    if not x or not values:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40"><text x="8" y="24">no data</text></svg>'
    x_lo, x_hi = min(x), max(x)
    y_lo, y_hi = min(values), max(values)
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    if x_hi == x_lo:
        x_hi = x_lo + 1

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * plot_w

    def py(v: float) -> float:
        return top + (1 - (v - y_lo) / (y_hi - y_lo)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>',
    ]
    for i in range(5):
        v = y_lo + (y_hi - y_lo) * i / 4
        parts.append(f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    for v in sorted(set(x))[:: max(1, len(set(x)) // 8)]:
        parts.append(
            f'<text x="{px(v):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{v:g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for n, (name, ys) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, ys, strict=True))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{left + 8}" y="{top + 12 + 14 * n}" fill="{color}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def best_of_k_svg(curve: Sequence[dict]) -> str:
    """Llama 2 Fig. 7 from a stored curve ``[{"k", "mean_max", "mean_median"}, ...]``."""
    return line_chart_svg(
        [p["k"] for p in curve],
        {
            "max of k": [p["mean_max"] for p in curve],
            "median of k": [p["mean_median"] for p in curve],
        },
        title="Reward vs. number of samples (Llama 2 Fig. 7)",
        x_label="samples k",
        y_label="mean reward",
    )
