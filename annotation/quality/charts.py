"""Server-side SVG plots for the Quality page: no JavaScript, no CDN. Plain Python.

Every text that comes from data goes through ``html.escape``.
"""

from __future__ import annotations

from html import escape

from annotation.quality.agreement import KappaPair


def _kappa_color(kappa: float) -> str:
    """Red (κ ≤ 0) through amber (0.4) to green (κ = 1)."""
    k = min(max(kappa, 0.0), 1.0)
    if k < 0.4:
        t = k / 0.4
        r, g, b = 229, int(57 + (179 - 57) * t), int(53 + (0 - 53) * t)
    else:
        t = (k - 0.4) / 0.6
        r, g, b = int(229 + (46 - 229) * t), int(179 + (125 - 179) * t), int(0 + 50 * t)
    return f"#{r:02x}{g:02x}{b:02x}"


def kappa_matrix_svg(raters: list[str], pairs: list[KappaPair], *, title: str) -> str:
    """A symmetric heat map of weighted κ between annotators; grey where they share too
    few comparisons (the count is in the cell's tooltip)."""
    by_pair = {}
    for p in pairs:
        by_pair[(p.rater_a, p.rater_b)] = by_pair[(p.rater_b, p.rater_a)] = p
    n = len(raters)
    cell = 40 if n <= 8 else 30 if n <= 14 else 20
    longest = min(max((len(r) for r in raters), default=0), 20)
    label_w, top = max(60, 12 + 7 * longest), 44 + int(5.5 * longest)  # names rotated 60°
    size = max(n, 1) * cell
    width, height = max(label_w + size + 10, label_w + 5 * 62 + 90), top + size + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" class="chart" '
        'style="font:11px sans-serif">',
        f'<text x="0" y="18" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]
    if n < 2:
        out.append('<text x="0" y="40">Fewer than two annotators.</text></svg>')
        return "".join(out)
    for i, name in enumerate(raters):
        y = top + i * cell
        out.append(
            f'<text x="{label_w - 6}" y="{y + cell / 2 + 4:.0f}" text-anchor="end">{escape(name[:20])}</text>'
        )
        x = label_w + i * cell + cell / 2
        out.append(
            f'<text transform="translate({x + 4:.0f},{top - 6}) rotate(-60)">{escape(name[:20])}</text>'
        )
    for i, a in enumerate(raters):
        for j, b in enumerate(raters):
            x, y = label_w + j * cell, top + i * cell
            if i == j:
                out.append(
                    f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="#f5f5f5"/>'
                )
                continue
            p = by_pair.get((a, b))
            if p is None or p.kappa is None:
                shared = p.shared if p else 0
                out.append(
                    f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="#e0e0e0">'
                    f"<title>{escape(a)} · {escape(b)}: {shared} shared, too few for κ</title></rect>"
                )
                continue
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{_kappa_color(p.kappa)}"><title>{escape(a)} · {escape(b)}: κ = '
                f"{p.kappa:.2f} on {p.shared} shared</title></rect>"
            )
            if cell >= 30:  # room for the number
                out.append(
                    f'<text x="{x + (cell - 2) / 2:.0f}" y="{y + cell / 2 + 3:.0f}" '
                    f'text-anchor="middle" fill="#fff" font-size="10">{p.kappa:.2f}</text>'
                )
    y = top + size + 12
    for k, (value, text) in enumerate(((0.0, "κ ≤ 0"), (0.4, "0.4"), (0.7, "0.7"), (1.0, "1"))):
        x = label_w + k * 62
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{_kappa_color(value)}"/>')
        out.append(f'<text x="{x + 16}" y="{y + 10}">{text}</text>')
    x = label_w + 4 * 62
    out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="#e0e0e0"/>')
    out.append(f'<text x="{x + 16}" y="{y + 10}">too few shared</text>')
    out.append("</svg>")
    return "".join(out)


def rate_bars_svg(
    rows: list[tuple[str, float | None, str]], *, title: str, reference: float | None = None
) -> str:
    """Horizontal bars in [0, 1], one per annotator: (name, rate or None, note beside it).
    ``reference`` draws a dashed line (e.g. the batch's overall rate)."""
    row_h, label_w, top, width = 22, 130, 30, 560
    plot_w = width - label_w - 120
    height = top + row_h * max(len(rows), 1) + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" class="chart" '
        'style="font:11px sans-serif">',
        f'<text x="0" y="18" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]
    if not rows:
        out.append(f'<text x="0" y="{top + 14}">No labels yet.</text>')
    for i, (name, rate, note) in enumerate(rows):
        y = top + i * row_h
        out.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(name[:20])}</text>'
        )
        out.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{plot_w}" height="{row_h - 6}" fill="#f1f3f5"/>'
        )
        if rate is not None:
            out.append(
                f'<rect x="{label_w}" y="{y + 2}" width="{plot_w * rate:.1f}" height="{row_h - 6}" '
                f'fill="#4a7bd0"><title>{escape(name)}: {100 * rate:.1f}%</title></rect>'
            )
        shown = f"{100 * rate:.0f}%" if rate is not None else "—"
        out.append(
            f'<text x="{label_w + plot_w + 6}" y="{y + 14}">{shown} '
            f'<tspan fill="#777">{escape(note)}</tspan></text>'
        )
    axis_y = top + row_h * max(len(rows), 1) + 2
    for tick in (0, 0.5, 1):
        x = label_w + plot_w * tick
        out.append(
            f'<text x="{x:.0f}" y="{axis_y + 12}" text-anchor="middle" fill="#777">{tick:.0%}</text>'
        )
    if reference is not None and rows:
        x = label_w + plot_w * reference
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#c33" '
            'stroke-dasharray="4 3"><title>batch overall</title></line>'
        )
    out.append("</svg>")
    return "".join(out)
