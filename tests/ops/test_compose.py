"""docker-compose.yml can't be run here (no Docker engine), so check what can be checked."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
APP_SERVICES = {"migrate", "web", "worker", "beat", "flower"}


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def documented_settings() -> set[str]:
    lines = (REPO / ".env.example").read_text().splitlines()
    return {m.group(1) for line in lines if (m := re.match(r"^([A-Z][A-Z0-9_]*)=", line))}


def test_compose_has_the_whole_stack_with_healthchecks():
    services = compose()["services"]

    assert set(services) == {"postgres", "redis", "sandbox"} | APP_SERVICES
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_migrations_run_once_before_the_app_starts():
    services = compose()["services"]

    assert "migrate" in " ".join(services["migrate"]["command"])
    for name in APP_SERVICES - {"migrate"}:
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"


def test_every_variable_compose_sets_is_a_documented_setting():
    documented = documented_settings()
    services = compose()["services"]

    for name, service in services.items():
        if name in {"postgres", "redis"}:
            continue
        unknown = set(service.get("environment", {})) - documented
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_every_documented_setting_is_read_by_the_code():
    sources = (
        "".join(
            path.read_text()
            for folder in ("config", "sandbox")
            for path in (REPO / folder).rglob("*.py")
        )
        + (REPO / "Procfile").read_text()
    )

    for name in documented_settings() - {"FLOWER_BASIC_AUTH", "FLOWER_PORT"}:
        assert name in sources, f"{name} is documented in .env.example but read nowhere"


def test_web_and_worker_share_one_metrics_directory_and_flower_stays_out():
    services = compose()["services"]

    for name in ("web", "worker"):
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/metrics"
        assert "metrics:/metrics" in services[name]["volumes"]
    assert "rm -rf /metrics/*" in " ".join(services["migrate"]["command"])
    assert "PROMETHEUS_MULTIPROC_DIR" not in services["flower"]["environment"]
