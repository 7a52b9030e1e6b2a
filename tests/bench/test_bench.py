"""`python -m bench` runs end to end on a small load, writes its figures, and finds every
payment credited exactly once. Figures are not asserted: they depend on the machine."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    # The suite's environment (Redis db 15, the test database) is passed on as it is: the
    # bench must pin its own database and Redis db whatever it inherits.
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_small_bench_writes_figures_and_is_exact(tmp_path: Path) -> None:
    figures_path = tmp_path / "bench.json"

    done = run_bench(
        "--payments",
        "40",
        "--batch-size",
        "4",
        "--scenarios",
        "ingest,settle",
        "--json",
        str(figures_path),
    )

    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "ingest" in done.stdout and "settle" in done.stdout  # the table was printed
    report = json.loads(figures_path.read_text())
    scenarios = report["scenarios"]
    assert set(scenarios) == {
        "ingest",
        "settle_hot",
        "settle_spread",
        "settle_hot_batched",
        "settle_spread_batched",
    }
    ingest = scenarios["ingest"]["figures"]
    assert ingest["requests_per_s"]["value"] > 0
    assert ingest["requests_per_s"]["baseline"] > 0
    assert ingest["p99_ms"]["value"] > 0
    assert ingest["cpu_ms_per_request"]["value"] > 0
    assert ingest["errors"]["value"] == 0
    assert len(ingest["requests_per_s"]["rounds"]) == 3  # every measured round is kept
    assert len(ingest["requests_per_s"]["baseline_rounds"]) == 3
    for key in ("settle_hot", "settle_spread", "settle_hot_batched", "settle_spread_batched"):
        figures = scenarios[key]["figures"]
        assert figures["payments_per_s"]["value"] > 0 and figures["payments_per_s"]["baseline"] > 0
        assert figures["cpu_ms_per_payment"]["value"] > 0
    for scenario in scenarios.values():
        assert scenario["exactness"]["lost"] == 0
        assert scenario["exactness"]["doubled"] == 0
        assert scenario["exactness"]["out_of_balance"] == 0
        assert scenario["baseline_exactness"]["lost"] == 0
        assert scenario["baseline_exactness"]["doubled"] == 0
    assert scenarios["settle_hot"]["exactness"]["checked"] == 3 * 40  # three rounds of 40
    assert report["exact"] is True


def test_metrics_scenario_scrapes_a_seeded_log_and_reports_both_sizes(tmp_path: Path) -> None:
    figures_path = tmp_path / "metrics.json"

    done = run_bench(
        "--scenarios", "metrics", "--metrics-rows", "5000", "--json", str(figures_path)
    )

    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    scenarios = json.loads(figures_path.read_text())["scenarios"]
    assert set(scenarios) == {"metrics_1k", "metrics_5k"}
    for scenario in scenarios.values():
        figures = scenario["figures"]
        assert figures["scrape_p50_ms"]["value"] > 0
        assert figures["cached_scrape_p50_ms"]["value"] > 0
        assert figures["gauge_query_p50_ms"]["baseline"] > 0  # the old full-table GROUP BY
    assert scenarios["metrics_5k"]["figures"]["read_large_over_small"]["value"] > 0


def test_latency_scenario_reports_each_load_and_draws_its_chart(tmp_path: Path) -> None:
    figures_path, chart_path = tmp_path / "latency.json", tmp_path / "latency.svg"

    done = run_bench(
        "--payments",
        "40",
        "--batch-size",
        "1",
        "--latency-seconds",
        "1",
        "--scenarios",
        "latency",
        "--json",
        str(figures_path),
        "--chart",
        str(chart_path),
    )

    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    scenarios = json.loads(figures_path.read_text())["scenarios"]
    assert set(scenarios) == {"latency"}  # --batch-size 1: no batched rows
    levels = scenarios["latency"]["details"]["levels"]
    assert [level["load_percent"] for level in levels] == [25, 50, 75, 100]
    for level in levels:
        assert level["payments"] > 0 and 0 < level["p50_ms"] <= level["p99_ms"]
    assert scenarios["latency"]["exactness"]["exact"] is True
    assert chart_path.read_text().startswith("<svg")
