"""A hand-written inline SVG bar chart for `afo-runbook metrics --html`.

Two panels over the same UTC days: incidents started per day, and downtime minutes per day.
Plain SVG elements only, with native <title> tooltips: no JavaScript, no fonts or images to
fetch, and no `xmlns` attribute (inline SVG in HTML5 does not need one, and leaving it out
keeps the page free of any URL).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

INCIDENT_COLOUR = "#3566c9"
DOWNTIME_COLOUR = "#d2711f"
AXIS_COLOUR = "#8a94a6"
TEXT_COLOUR = "#3a4354"

LEFT = 46  # room for the y-axis labels
RIGHT = 10
TOP = 8
PANEL = 64  # bar area height of one panel
PANEL_TITLE = 16  # the panel's caption above its bars
GAP = 14
BOTTOM = 20  # date labels
MAX_PLOT_WIDTH = 720
VALUE_LABEL_SLOT = 18  # px per day from which a bar carries its number
MIN_BAR_PX = 1.5  # a non-zero day never vanishes, however small next to the largest one


@dataclass(frozen=True)
class DayBar:
    date: str  # YYYY-MM-DD (UTC)
    incidents: int
    downtime_min: float


def _num(value: float) -> str:
    """Coordinates with at most two decimals: a short, stable SVG text."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _amount(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _label_step(count: int, slot: float) -> int:
    """Label every n-th day so that "MM-DD" labels (about 30 px) never overlap."""
    return max(1, math.ceil(34 / slot)) if count else 1


def daily_chart(days: Sequence[DayBar], *, caption: str) -> str:
    """An <svg> element: incidents per day over downtime minutes per day."""
    count = max(len(days), 1)
    slot = max(2.0, min(60.0, MAX_PLOT_WIDTH / count))
    bar = slot * 0.7 if slot >= 6 else slot * 0.85
    plot_width = slot * count
    width = LEFT + plot_width + RIGHT
    height = TOP + 2 * (PANEL_TITLE + PANEL) + GAP + BOTTOM
    panels = [
        ("incidents started per day", [float(d.incidents) for d in days], INCIDENT_COLOUR,
         lambda d: f"{d.date}: {d.incidents} incident(s) started", lambda v: f"{v:g}"),
        ("downtime minutes per day", [d.downtime_min for d in days], DOWNTIME_COLOUR,
         lambda d: f"{d.date}: {d.downtime_min:.1f} min down", _amount),
    ]
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(caption)}" '
        f'width="{_num(width)}" height="{_num(height)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}" font-family="system-ui, sans-serif" '
        f'font-size="10" fill="{TEXT_COLOUR}">',
        f"<title>{escape(caption)}</title>",
    ]
    y = float(TOP)
    for title, values, colour, tip, short in panels:
        top = y + PANEL_TITLE
        base = top + PANEL
        peak = max(values, default=0.0)
        scale_max = peak if peak > 0 else 1.0
        parts.append(f'<text x="{LEFT}" y="{_num(y + 11)}" font-weight="600">'
                     f"{escape(title)}</text>")
        # y axis: the panel's maximum at the top, 0 at the baseline
        parts.append(f'<text x="{LEFT - 6}" y="{_num(top + 4)}" text-anchor="end">'
                     f"{_amount(scale_max if peak > 0 else 0)}</text>")
        parts.append(f'<text x="{LEFT - 6}" y="{_num(base)}" text-anchor="end">0</text>')
        parts.append(f'<line x1="{LEFT}" y1="{_num(top)}" x2="{_num(LEFT + plot_width)}" '
                     f'y2="{_num(top)}" stroke="{AXIS_COLOUR}" stroke-width="0.5" '
                     f'stroke-dasharray="2 3"/>')
        for index, (day, value) in enumerate(zip(days, values, strict=True)):
            if value <= 0:
                continue
            h = max(MIN_BAR_PX, PANEL * value / scale_max)
            x = LEFT + index * slot + (slot - bar) / 2
            parts.append(f'<rect x="{_num(x)}" y="{_num(base - h)}" width="{_num(bar)}" '
                         f'height="{_num(h)}" fill="{colour}"><title>{escape(tip(day))}'
                         f"</title></rect>")
            if slot >= VALUE_LABEL_SLOT and h <= PANEL - 10:
                # the number itself, readable without hovering (only where it fits)
                parts.append(f'<text x="{_num(x + bar / 2)}" y="{_num(base - h - 2)}" '
                             f'text-anchor="middle" font-size="9">{short(value)}</text>')
        parts.append(f'<line x1="{LEFT}" y1="{_num(base)}" x2="{_num(LEFT + plot_width)}" '
                     f'y2="{_num(base)}" stroke="{AXIS_COLOUR}" stroke-width="1"/>')
        y = base + GAP
    step = _label_step(len(days), slot)
    label_y = y - GAP + BOTTOM - 6
    for index, day in enumerate(days):
        if index % step and index != len(days) - 1:
            continue
        if index == len(days) - 1 and index % step and index % step < step / 2:
            continue  # the last day's label would collide with the previous one
        x = LEFT + index * slot + slot / 2
        parts.append(f'<text x="{_num(x)}" y="{_num(label_y)}" text-anchor="middle">'
                     f"{escape(day.date[5:])}</text>")
    parts.append("</svg>")
    return "\n".join(parts)
