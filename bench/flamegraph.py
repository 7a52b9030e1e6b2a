"""A flame graph as a standalone SVG, drawn from collapsed stacks (`frame;frame;frame count`).

py-spy draws one per recording; the bench adds up several recordings (one per measured round)
first, so it draws the sum itself. The root is at the bottom; each frame is as wide as its
share of the samples, and hovering shows its name, samples and share.
"""

import zlib
from collections import Counter
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

WIDTH = 1200
ROW = 16
MARGIN = 10
TITLE = 28
CHAR_PX = 6.6  # of the 11 px font, to cut labels to their frame
NARROWEST_PX = 0.5  # frames narrower than this are left out


@dataclass
class _Node:
    samples: int = 0
    children: dict[str, "_Node"] = field(default_factory=dict)


def render(stacks: Counter[str], *, title: str) -> str:
    root = _Node()
    for stack, samples in stacks.items():
        root.samples += samples
        node = root
        for frame in stack.split(";"):
            node = node.children.setdefault(frame, _Node())
            node.samples += samples
    depth = _depth(root)
    height = TITLE + depth * ROW + 2 * MARGIN
    scale = (WIDTH - 2 * MARGIN) / max(root.samples, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="#f8f8f4"/>',
        f'<text x="{WIDTH / 2}" y="{MARGIN + 12}" text-anchor="middle" font-size="14">'
        f"{escape(title)} ({root.samples:,} samples)</text>",
    ]
    _draw(parts, root, x=MARGIN, level=0, scale=scale, total=root.samples, bottom=height - MARGIN)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _depth(node: _Node) -> int:
    return 1 + max((_depth(child) for child in node.children.values()), default=0)


def _draw(
    parts: list[str], node: _Node, *, x: float, level: int, scale: float, total: int, bottom: int
) -> None:
    """The node's children side by side on the row above it, widest first, and theirs above."""
    for name, child in sorted(node.children.items(), key=lambda item: -item[1].samples):
        width = child.samples * scale
        if width >= NARROWEST_PX:
            y = bottom - (level + 1) * ROW
            share = 100 * child.samples / total
            label = name if len(name) * CHAR_PX <= width - 4 else name[: int(width / CHAR_PX) - 2]
            parts.append(
                f"<g><title>{escape(name)} ({child.samples:,} samples, {share:.1f}%)</title>"
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{ROW - 1}" '
                f'fill="{_colour(name)}"/>'
                + (f'<text x="{x + 2:.1f}" y="{y + 11}">{escape(label)}</text>' if label else "")
                + "</g>"
            )
            _draw(parts, child, x=x, level=level + 1, scale=scale, total=total, bottom=bottom)
        x += width


def _colour(name: str) -> str:
    """Warm colours, the same for the same function in every graph."""
    hashed = zlib.crc32(name.encode())
    return f"rgb({205 + hashed % 50},{90 + (hashed >> 8) % 110},{40 + (hashed >> 16) % 50})"
