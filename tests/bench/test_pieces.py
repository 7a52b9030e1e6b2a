"""The bench's pure pieces: the spread and latency tables, flame graphs, the chart, py-spy's
stacks added up. No processes run here."""

import math
import xml.dom.minidom
from collections import Counter
from pathlib import Path

from bench.chart import Series
from bench.chart import render as render_chart
from bench.flamegraph import render as render_flamegraph
from bench.profile import merge
from bench.report import Exactness, Figure, ScenarioResult, latency_table, table


def test_table_prints_the_spread_of_the_rounds_beside_the_median() -> None:
    rate = Figure("payments_per_s", "settled", 200.0, "payments/s", 180.0, rounds=(190, 200, 230))
    result = ScenarioResult("settle_hot", "settle", [rate], Exactness(3, 0, 0))

    printed = table([result])

    assert "190-230" in printed
    assert rate.spread == (190, 230)


def test_a_figure_of_one_round_has_no_spread() -> None:
    assert Figure("x", "x", 1.0, "ms", rounds=(1.0,)).spread is None
    assert Figure("x", "x", 1.0, "ms", rounds=(math.nan, 2.0)).spread is None


def test_latency_table_has_a_line_per_offered_load() -> None:
    levels = [
        {
            "load_percent": load,
            "offered_per_s": load,
            "achieved_per_s": load,
            "p50_ms": 10,
            "p95_ms": 20,
            "p99_ms": 30,
            "payments": load * 10,
        }
        for load in (25, 50)
    ]
    result = ScenarioResult("latency", "settle latency", [], Exactness(0, 0, 0), details={})
    assert latency_table([result]) is None
    result.details["levels"] = levels

    printed = latency_table([result])

    assert printed is not None
    assert "25%" in printed and "50%" in printed and "30.0 ms" in printed


def test_recordings_add_up_and_one_program_is_one_frame_whatever_its_pid(tmp_path: Path) -> None:
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text('process 11:"/venv/bin/python /venv/bin/celery -A config";work (t.py:1) 3\n')
    second.write_text('process 42:"/venv/bin/python /venv/bin/celery -A config";work (t.py:1) 4\n')

    stacks = merge([first, second, tmp_path / "missing.txt"])

    assert stacks == Counter({'process "python celery";work (t.py:1)': 7})


def test_flame_graph_is_svg_with_a_frame_per_function() -> None:
    svg = render_flamegraph(Counter({"main;settle;insert": 3, "main;verify": 1}), title="worker")

    xml.dom.minidom.parseString(svg)
    assert svg.count("<rect") == 1 + 4  # the background and main, settle, insert, verify
    assert "(4 samples)" in svg


def test_chart_is_svg_with_a_line_per_variant_and_measure() -> None:
    levels = [
        {"offered_per_s": rate, "achieved_per_s": rate, "p99_ms": rate / 2} for rate in (10, 20)
    ]

    svg = render_chart([Series("unbatched", levels), Series("batched", levels)], caption="run")

    xml.dom.minidom.parseString(svg)
    assert svg.count("<polyline") == 4
