"""Charts for the web UI, drawn on the server as inline SVG: no script, no CDN, readable without
styles (each bar carries a <title> with its time and value, and the chart a text summary)."""
from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 44, 22, 10


def bar_chart(label: str, times: list[str], values: list[int]) -> Markup:
    """One series as bars: times along the bottom (first and last labelled), a 0..max scale."""
    top = max(values, default=0) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(1, len(values))
    bars = []
    for i, (when, value) in enumerate(zip(times, values)):
        h = plot_h * value / top
        x, y = PAD_LEFT + i * step, PAD_TOP + plot_h - h
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(1.0, step * 0.8):.1f}" height="{h:.1f}" '
                    f'class="bar"><title>{escape(_short(when))}: {value}</title></rect>')
    axis = (f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 4}" y2="{PAD_TOP + plot_h}" class="axis"/>'
            f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 8}" text-anchor="end" class="tick">{top}</text>'
            f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + plot_h}" text-anchor="end" class="tick">0</text>')
    if times:
        axis += (f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}" class="tick">{escape(_short(times[0]))}</text>'
                 f'<text x="{WIDTH - 4}" y="{HEIGHT - 6}" text-anchor="end" class="tick">{escape(_short(times[-1]))}</text>')
    summary = f"{label}: {sum(values)} in all, at most {max(values, default=0)} in one interval"
    return Markup(f'<figure class="chart"><figcaption>{escape(label)} <span class="muted">({sum(values)})</span>'
                  f'</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(summary)}" '
                  f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="none">'
                  f'<style>.bar{{fill:#3b6ea5}}.axis{{stroke:#888}}.tick{{font:11px sans-serif;fill:#555}}</style>'
                  f'{axis}{"".join(bars)}</svg></figure>')


def _short(iso: str) -> str:
    """2026-12-06T04:00:00Z -> 12-06 04:00."""
    return iso[5:16].replace("T", " ")
