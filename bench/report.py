"""Figures, the exactness verdicts, and how they are shown: a table on stdout, JSON on request,
progress on stderr. The bench's output goes through here and nowhere else."""

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO


@dataclass(frozen=True)
class Exactness:
    """lost: paid and finished, but not credited; doubled: credited more than once.

    `unfinished` is work still waiting when `--duration` cut a scenario short; without a cap
    anything unfinished at the drain deadline is counted as lost.
    """

    checked: int
    lost: int
    doubled: int
    out_of_balance: int = 0  # contestants whose votes differ from their ledger sum
    unfinished: int = 0

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and self.out_of_balance == 0

    def __add__(self, other: "Exactness") -> "Exactness":
        """Two rounds' checks together: each round was checked on its own clean state."""
        return Exactness(
            checked=self.checked + other.checked,
            lost=self.lost + other.lost,
            doubled=self.doubled + other.doubled,
            out_of_balance=self.out_of_balance + other.out_of_balance,
            unfinished=self.unfinished + other.unfinished,
        )

    def describe(self) -> str:
        if self.exact:
            text = "yes"
        else:
            text = f"NO: lost {self.lost}, doubled {self.doubled}"
            if self.out_of_balance:
                text += f", {self.out_of_balance} out of balance"
        if self.unfinished:
            text += f" ({self.unfinished} unfinished at the cap)"
        return text


@dataclass(frozen=True)
class Goal:
    text: str
    met: bool


@dataclass(frozen=True)
class Figure:
    """One line of the table: tally's median, its baseline's, and every round behind them."""

    key: str  # stable name in the JSON, e.g. "payments_per_s"
    label: str  # what the table says
    value: float
    unit: str
    baseline: float | None = None
    goal: Goal | None = None
    rounds: tuple[float, ...] = ()  # tally's value in each measured round, in order
    baseline_rounds: tuple[float, ...] = ()

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or math.isnan(self.baseline):
            return None
        return self.value / self.baseline

    @property
    def spread(self) -> tuple[float, float] | None:
        """Lowest and highest of tally's rounds; None for a figure of one round or none."""
        values = [value for value in self.rounds if not math.isnan(value)]
        return (min(values), max(values)) if len(values) > 1 else None


@dataclass
class ScenarioResult:
    key: str  # e.g. "settle_hot"
    title: str  # e.g. "settle, hot contestant"
    figures: list[Figure]
    exactness: Exactness
    baseline_exactness: Exactness | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        baseline_ok = self.baseline_exactness is None or self.baseline_exactness.exact
        return self.exactness.exact and baseline_ok


class Console:
    """Progress on stderr: a redrawn bar on a terminal, one line per step otherwise (CI logs)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._drawn_at = 0.0
        self._label = ""

    def step(self, label: str) -> None:
        self._end_bar()
        self._label = label
        if not self.live:
            self.stream.write(f"bench: {label}\n")
            self.stream.flush()

    def progress(self, done: int, total: int) -> None:
        if not self.live or time.monotonic() - self._drawn_at < 0.1:
            return
        self._drawn_at = time.monotonic()
        width = 30
        filled = min(width, round(width * done / total)) if total else width
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r  {self._label[:44]:<44} [{bar}] {done}/{total}\x1b[K")
        self.stream.flush()

    def note(self, text: str) -> None:
        self._end_bar()
        self.stream.write(f"bench: {text}\n")
        self.stream.flush()

    def _end_bar(self) -> None:
        if self.live and self._drawn_at:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn_at = 0.0


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"  # 0.899 must not print as 0.90 next to a goal of 0.9


def table(results: list[ScenarioResult]) -> str:
    """The readable summary: one line per figure, exactness on each scenario's first line."""
    header = (
        "scenario",
        "figure",
        "value",
        "spread",
        "unit",
        "baseline",
        "ratio",
        "goal",
        "exact?",
    )
    rows: list[tuple[str, ...]] = []
    for result in results:
        for position, figure in enumerate(result.figures):
            ratio = figure.ratio
            goal = ""
            if figure.goal is not None:
                goal = f"{figure.goal.text}: {'met' if figure.goal.met else 'MISSED'}"
            exact = ""
            if position == 0:
                exact = result.exactness.describe()
                if result.baseline_exactness and not result.baseline_exactness.exact:
                    exact += f"; baseline {result.baseline_exactness.describe()}"
            rows.append(
                (
                    result.title if position == 0 else "",
                    figure.label,
                    _number(figure.value),
                    _spread(figure.spread),
                    figure.unit,
                    _number(figure.baseline),
                    f"{ratio:.2f}x" if ratio is not None else "-",
                    goal,
                    exact,
                )
            )
    return _aligned(header, rows, right={2, 3, 5, 6})  # numbers line up on the right


def _spread(spread: tuple[float, float] | None) -> str:
    return "-" if spread is None else f"{_number(spread[0])}-{_number(spread[1])}"


def _aligned(header: tuple[str, ...], rows: list[tuple[str, ...]], *, right: set[int]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def latency_table(results: list[ScenarioResult]) -> str | None:
    """Settle latency by offered load, for the scenarios that measured it (details["levels"]);
    None when none did."""
    header = ("scenario", "load", "offered", "achieved", "p50", "p95", "p99", "payments")
    rows: list[tuple[str, ...]] = []
    for result in results:
        for position, level in enumerate(result.details.get("levels", [])):
            rows.append(
                (
                    result.title if position == 0 else "",
                    f"{level['load_percent']:g}%",
                    f"{_number(level['offered_per_s'])}/s",
                    f"{_number(level['achieved_per_s'])}/s",
                    f"{_number(level['p50_ms'])} ms",
                    f"{_number(level['p95_ms'])} ms",
                    f"{_number(level['p99_ms'])} ms",
                    str(level["payments"]),
                )
            )
    if not rows:
        return None
    return _aligned(header, rows, right={1, 2, 3, 4, 5, 6, 7})


def to_json(results: list[ScenarioResult], meta: dict[str, Any]) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for result in results:
        scenarios[result.key] = {
            "title": result.title,
            "figures": {
                figure.key: {
                    "label": figure.label,
                    "value": _finite(figure.value),
                    "unit": figure.unit,
                    "baseline": _finite(figure.baseline),
                    "ratio": _finite(figure.ratio),
                    "goal": figure.goal.text if figure.goal else None,
                    "goal_met": figure.goal.met if figure.goal else None,
                    "spread": list(figure.spread) if figure.spread else None,
                    "rounds": [_finite(value) for value in figure.rounds],
                    "baseline_rounds": [_finite(value) for value in figure.baseline_rounds],
                }
                for figure in result.figures
            },
            "exactness": {**asdict(result.exactness), "exact": result.exactness.exact},
            "baseline_exactness": (
                {**asdict(result.baseline_exactness), "exact": result.baseline_exactness.exact}
                if result.baseline_exactness
                else None
            ),
            "details": result.details,
        }
    return {**meta, "scenarios": scenarios, "exact": all(r.exact for r in results)}


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: a figure that could not be measured is null."""
    return None if value is None or math.isnan(value) else value
