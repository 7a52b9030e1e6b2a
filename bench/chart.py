"""The latency scenario's chart as a standalone SVG: throughput and settle p99 by offered load.

Drawn by hand (a few lines and labels), so the bench needs no plotting library. x is the
offered load in payments/s; the left axis and solid lines are the achieved rate, the right
axis and dashed lines the settle latency's p99; one colour per variant (unbatched, batched).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 70, 50, 80
COLOURS = ("#1f5fa8", "#c4461b", "#2b8a3e", "#7048a8")
TICKS = 5


@dataclass(frozen=True)
class Series:
    name: str  # e.g. "unbatched (x4)"
    levels: Sequence[dict[str, Any]]  # the latency scenario's details["levels"]


def render(series: Sequence[Series], *, caption: str) -> str:
    points = [level for one in series for level in one.levels]
    if not points:
        raise ValueError("no latency levels to draw")
    x_max = _nice(max(level["offered_per_s"] for level in points))
    rate_max = _nice(max(max(lv["achieved_per_s"], lv["offered_per_s"]) for lv in points))
    p99_max = _nice(max(level["p99_ms"] for level in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(value: float) -> float:
        return LEFT + plot_w * value / x_max

    def y(value: float, top: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="15">'
        "Settle throughput and p99 latency by offered load</text>",
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle" font-size="10" '
        f'fill="#555">{escape(caption)}</text>',
    ]
    for tick in range(TICKS + 1):
        share = tick / TICKS
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(share, 1):.1f}" '
            f'y2="{y(share, 1):.1f}" stroke="#e4e4e4"/>'
        )
        parts.append(_label(LEFT - 6, y(share, 1) + 4, f"{rate_max * share:g}", "end"))
        parts.append(_label(WIDTH - RIGHT + 6, y(share, 1) + 4, f"{p99_max * share:g}", "start"))
        parts.append(_label(x(x_max * share), TOP + plot_h + 18, f"{x_max * share:g}", "middle"))
    parts += [
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#888"/>',
        _label(LEFT + plot_w / 2, TOP + plot_h + 38, "offered load (payments/s)", "middle"),
        _vertical(18, TOP + plot_h / 2, "achieved (payments/s), solid"),
        _vertical(WIDTH - 14, TOP + plot_h / 2, "settle p99 (ms), dashed"),
    ]
    for n, one in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        achieved = [
            (x(lv["offered_per_s"]), y(lv["achieved_per_s"], rate_max)) for lv in one.levels
        ]
        p99 = [(x(lv["offered_per_s"]), y(lv["p99_ms"], p99_max)) for lv in one.levels]
        parts.append(_line(achieved, colour, dashed=False))
        parts.append(_line(p99, colour, dashed=True))
        legend_y = TOP + 16 + 16 * n
        parts.append(
            f'<line x1="{LEFT + 10}" x2="{LEFT + 34}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(_label(LEFT + 40, legend_y, one.name, "start"))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _nice(value: float) -> float:
    """A round axis top at or above `value`: 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10.0 ** len(str(int(value)))
    for step in (0.1, 0.2, 0.5, 1.0):
        if value <= step * power:
            return step * power
    return float(power)


def _label(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(text)}</text>'


def _vertical(x: float, y: float, text: str) -> str:
    return (
        f'<text x="{x}" y="{y:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 {x} {y:.1f})">{escape(text)}</text>'
    )


def _line(points: list[tuple[float, float]], colour: str, *, dashed: bool) -> str:
    path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    dots = "".join(
        f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in points
    )
    return f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>{dots}'
