"""The run's timeline for the evidence record: one bar per check, from its start to its result,
coloured by outcome, with each section's budget as a mark. Inline SVG, so the report stays
one self-contained file."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from afo_runbook.results import GROUPS

COLOURS = {"passed": "#2a2", "failed": "#c22", "error": "#c80", "skipped": "#999"}
ROW, LABEL, WIDTH, AXIS = 16, 190, 520, 28  # pixels


@dataclass(frozen=True)
class Bar:
    key: str
    group: str
    outcome: str
    start_s: float
    end_s: float


def bars(checks: list[Any]) -> list[Bar]:
    """Section-1 checks that carry their timing (evidence["timing"]), in start order."""
    found = []
    for check in checks:
        timing = (check.evidence or {}).get("timing") if check.group in GROUPS else None
        if not timing:
            continue
        start = float(timing.get("started_s", 0.0))
        end = max(start, float(timing.get("finished_s", start)))
        found.append(Bar(check.key, check.group, check.outcome, start, end))
    return sorted(found, key=lambda b: (b.start_s, b.key))


def svg(checks: list[Any], budgets: Any, duration_s: float) -> str:
    """The timeline as an <svg> element; "" when no check has timing (an old or empty run)."""
    rows = bars(checks)
    if not rows:
        return ""
    span = max(duration_s, max(b.end_s for b in rows), 0.001)
    scale = WIDTH / span
    height = AXIS + ROW * len(rows) + 24
    parts = [f'<svg id="runbook-timeline" xmlns="http://www.w3.org/2000/svg" '
             f'width="{LABEL + WIDTH + 150}" height="{height}" role="img" '
             f'aria-label="timeline of {len(rows)} checks over {span:.2f} s">',
             f'<text x="0" y="14" font-size="12">timeline: {len(rows)} checks, '
             f'{span:.2f} s</text>']
    for index, bar in enumerate(rows):
        y = AXIS + index * ROW
        x = LABEL + bar.start_s * scale
        width = max(1.0, (bar.end_s - bar.start_s) * scale)
        colour = COLOURS.get(bar.outcome, "#555")
        parts.append(f'<text x="0" y="{y + 11}" font-size="11">{html.escape(bar.key)}</text>'
                     f'<rect class="runbook-bar {html.escape(bar.outcome)}" x="{x:.1f}" '
                     f'y="{y + 2}" width="{width:.1f}" height="{ROW - 4}" fill="{colour}">'
                     f'<title>{html.escape(bar.key)}: {html.escape(bar.outcome)}, '
                     f'{bar.start_s:.3f}-{bar.end_s:.3f} s</title></rect>')
    bottom = AXIS + ROW * len(rows)
    parts.append(f'<line x1="{LABEL}" y1="{bottom}" x2="{LABEL + WIDTH}" y2="{bottom}" '
                 'stroke="#888"/>')
    parts.append(f'<text x="{LABEL}" y="{bottom + 14}" font-size="10">0 s</text>'
                 f'<text x="{LABEL + WIDTH - 30}" y="{bottom + 14}" font-size="10">'
                 f'{span:.2f} s</text>')
    # The section budgets: a mark where it falls on the axis, else said at the right.
    off_scale = []
    for group in sorted({b.group for b in rows}, key=GROUPS.index):
        budget = budgets.for_group(group)
        if budget <= span:
            x = LABEL + budget * scale
            parts.append(f'<line class="runbook-budget" x1="{x:.1f}" y1="{AXIS - 4}" '
                         f'x2="{x:.1f}" y2="{bottom}" stroke="#c22" stroke-dasharray="3,2">'
                         f'<title>{group} budget {budget:g} s</title></line>')
        else:
            off_scale.append(f"{group} {budget:g} s")
    if off_scale:
        parts.append(f'<text class="runbook-budget" x="{LABEL + WIDTH + 6}" y="{AXIS + 10}" '
                     f'font-size="10">budgets (beyond the axis):</text>')
        for index, text in enumerate(off_scale):
            parts.append(f'<text class="runbook-budget" x="{LABEL + WIDTH + 6}" '
                         f'y="{AXIS + 24 + 12 * index}" font-size="10">{html.escape(text)}'
                         '</text>')
    parts.append("</svg>")
    return "".join(parts)
