"""Server-side SVG charts for the model pages, hand-written (no JS, no CDN). Plain Python."""

from __future__ import annotations

from html import escape

W, H, PAD = 420, 220, 36


def _frame(body: str, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        f'aria-label="{escape(title)}" style="font:11px sans-serif;background:#fff">'
        f'<text x="{W / 2}" y="14" text-anchor="middle" font-weight="bold">{escape(title)}</text>{body}</svg>'
    )


def _y(v: float, lo: float, hi: float) -> float:
    return H - PAD - (v - lo) / ((hi - lo) or 1) * (H - 2 * PAD)


def bar_chart(
    labels: list[str],
    values: list[float | None],
    *,
    title: str,
    ymax: float = 1.0,
    ref: float | None = 0.5,
) -> str:
    """Bars in [0, ymax] (accuracies); None draws no bar; ``ref`` draws a dashed line."""
    n = max(len(values), 1)
    bw = (W - 2 * PAD) / n
    parts = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>']
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x = PAD + i * bw
        if v is not None:
            y = _y(v, 0, ymax)
            parts.append(
                f'<rect x="{x + 4:.1f}" y="{y:.1f}" width="{bw - 8:.1f}" height="{H - PAD - y:.1f}" fill="#4a7bd0"/>'
            )
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{100 * v:.1f}</text>'
            )
        parts.append(
            f'<text x="{x + bw / 2:.1f}" y="{H - PAD + 13}" text-anchor="middle">{escape(label[:18])}</text>'
        )
    if ref is not None:
        y = _y(ref, 0, ymax)
        parts.append(
            f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - PAD}" y2="{y:.1f}" stroke="#c33" stroke-dasharray="4 3"/>'
        )
    return _frame("".join(parts), title)


def calibration_chart(points: list[dict], *, title: str = "Calibration") -> str:
    """Empirical win rate per reward-difference bin (dots) against σ(diff) (line)."""
    if not points:
        return _frame('<text x="50%" y="50%" text-anchor="middle">no data</text>', title)
    lo, hi = points[0]["lo"], points[-1]["hi"]
    xs = lambda v: PAD + (v - lo) / ((hi - lo) or 1) * (W - 2 * PAD)  # noqa: E731
    parts = [
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">reward difference (preferred − other)</text>',
        f'<text x="{PAD - 4}" y="{_y(1, 0, 1) + 4:.1f}" text-anchor="end">1</text>',
        f'<text x="{PAD - 4}" y="{_y(0, 0, 1) + 4:.1f}" text-anchor="end">0</text>',
    ]
    line = " ".join(
        f"{xs((p['lo'] + p['hi']) / 2):.1f},{_y(p['predicted'], 0, 1):.1f}" for p in points
    )
    parts.append(f'<polyline points="{line}" fill="none" stroke="#999" stroke-dasharray="3 3"/>')
    for p in points:
        parts.append(
            f'<circle cx="{xs((p["lo"] + p["hi"]) / 2):.1f}" cy="{_y(p["win_rate"], 0, 1):.1f}" r="{min(3 + p["n"] ** 0.5 / 3, 9):.1f}" fill="#4a7bd0" fill-opacity="0.7"><title>n={p["n"]} win={p["win_rate"]:.2f}</title></circle>'
        )
    return _frame("".join(parts), title)


def histogram_chart(bins: list[dict], *, title: str = "Score distribution") -> str:
    if not bins:
        return _frame('<text x="50%" y="50%" text-anchor="middle">no data</text>', title)
    top = max(b["n"] for b in bins) or 1
    bw = (W - 2 * PAD) / len(bins)
    parts = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>']
    for i, b in enumerate(bins):
        y = _y(b["n"], 0, top)
        parts.append(
            f'<rect x="{PAD + i * bw:.1f}" y="{y:.1f}" width="{bw - 1:.1f}" height="{H - PAD - y:.1f}" fill="#6aa56a"><title>{b["lo"]:.2f}…{b["hi"]:.2f}: {b["n"]}</title></rect>'
        )
    parts.append(f'<text x="{PAD}" y="{H - PAD + 13}">{bins[0]["lo"]:.2f}</text>')
    parts.append(
        f'<text x="{W - PAD}" y="{H - PAD + 13}" text-anchor="end">{bins[-1]["hi"]:.2f}</text>'
    )
    return _frame("".join(parts), title)
