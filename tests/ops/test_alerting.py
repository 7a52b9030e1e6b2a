"""The alert rules and the Grafana dashboard in ops/prometheus/ (docs/operations.md#alerts).

promtool checks the rules and runs their unit tests (alerts.test.yml); the tests here also
make sure every alert has a case that fires and one that must not, and that every metric the
rules and the dashboard query is one /metrics exports.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.metrics import scrape_registry

RULES_DIR = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"
DASHBOARD = RULES_DIR / "grafana-dashboard.json"

# A metric name in PromQL: tally_ and then name characters (label names inside {} and
# template variables such as $__rate_interval never start with tally_).
METRIC_NAME = re.compile(r"\btally_[a-zA-Z0-9_]*")
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


@pytest.fixture(scope="module")
def promtool() -> str:
    """Debian's promtool (package prometheus); .ci/run installs it, so CI never skips."""
    path = shutil.which("promtool")
    if path is None:
        reason = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the rule tests; .ci/run installs it")
        pytest.skip(reason)
    return path


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120
    )


def alert_rules() -> list[dict]:
    return [
        rule
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture
def exported_names(db) -> set[str]:
    """Every sample name a scrape of /metrics can have, read from the real collectors.

    A labelled counter nobody has counted yet has no samples, so names come from each
    family's name and type: a counter exports name_total, a histogram _bucket, _count, _sum.
    """
    return {
        family.name + suffix
        for family in scrape_registry().collect()
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))
    }


def test_promtool_accepts_the_rules(promtool):
    result = run_promtool(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alert_rules_pass_their_unit_tests(promtool):
    result = run_promtool(promtool, "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing():
    cases = [
        check
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for check in test.get("alert_rule_test", [])
    ]
    firing = {check["alertname"] for check in cases if check.get("exp_alerts")}
    silent = {check["alertname"] for check in cases if not check.get("exp_alerts")}
    alerts = {rule["alert"] for rule in alert_rules()}

    assert alerts - firing == set(), "alerts with no case where they fire"
    assert alerts - silent == set(), "alerts with no case where they must not fire"
    assert (firing | silent) - alerts == set(), "cases for alerts that do not exist"


def test_every_alert_has_a_severity_and_a_runbook_section_that_exists():
    operations = (RULES_DIR.parents[1] / "docs" / "operations.md").read_text()
    anchors = {github_anchor(line) for line in operations.splitlines() if line.startswith("#")}
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert page == "docs/operations.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in {page}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_the_rules_query_only_metrics_that_exist(exported_names):
    queried = {name for rule in alert_rules() for name in METRIC_NAME.findall(rule["expr"])}
    assert queried
    assert queried - exported_names == set()


def test_the_dashboard_is_grafana_json_with_a_panel_per_subject():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert dashboard["uid"] and len(set(titles)) == len(titles)
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    queried = " ".join(dashboard_queries())
    for subject in [
        "tally_deliveries",
        "tally_oldest_unprocessed_delivery_age_seconds",
        "tally_queue_depth",
        "tally_gateway_verify_seconds_bucket",
        "tally_gateway_verify_seconds_count",
        "tally_payments_settled_total",
        "tally_votes_credited_total",
        "tally_votes_reversed_total",
        "tally_disputes_open",
        "tally_payments_needing_attention",
        "tally_webhook_deliveries_total",
    ]:
        assert re.search(rf"\b{subject}\b", queried), f"no panel shows {subject}"


def test_the_dashboard_queries_only_metrics_that_exist(exported_names):
    queried = {name for expr in dashboard_queries() for name in METRIC_NAME.findall(expr)}
    assert queried - exported_names == set()


def test_the_dashboard_queries_are_valid_promql(promtool, tmp_path):
    """promtool parses each query as a recording rule ($__rate_interval as Grafana fills it)."""
    queries = [expr.replace("$__rate_interval", "1m") for expr in dashboard_queries()]
    recorded = [{"record": f"dashboard:query{i}", "expr": expr} for i, expr in enumerate(queries)]
    rules = {"groups": [{"name": "dashboard", "rules": recorded}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run_promtool(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
