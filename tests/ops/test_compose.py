"""docker-compose.yml can't be run here (no Docker engine), so check what can be checked:
its shape, its variables, and tally's settings loaded with the environment it gives web."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
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

    for name in documented_settings() - {"FLOWER_PORT"}:
        assert name in sources, f"{name} is documented in .env.example but read nowhere"


def test_web_and_worker_share_one_metrics_directory_and_flower_stays_out():
    services = compose()["services"]

    for name in ("web", "worker"):
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/metrics"
        assert "metrics:/metrics" in services[name]["volumes"]
    assert "rm -rf /metrics/*" in " ".join(services["migrate"]["command"])
    assert "PROMETHEUS_MULTIPROC_DIR" not in services["flower"]["environment"]


# --- safe by default -------------------------------------------------------------------------

SECRETS = ("DJANGO_SECRET_KEY", "PAYSTACK_SECRET_KEY", "FLOWER_BASIC_AUTH")
# What an operator passes for a production stack (docs/operations.md).
PRODUCTION_VARIABLES = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "PAYSTACK_SECRET_KEY": "sk_live_" + secrets.token_hex(20),
    "FLOWER_BASIC_AUTH": "ops:" + secrets.token_urlsafe(18),
}
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(Exception):
    """Compose would stop: a ${NAME:?message} variable is unset or empty."""


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message} substitution."""

    def value(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        present = variables.get(name)
        empty = present is None or (present == "" and operator and operator.startswith(":"))
        if operator and operator.endswith("?") and empty:
            raise MissingVariable(f"{name}: {argument}")
        if operator and operator.endswith("-") and empty:
            return argument
        return present or ""

    return _VARIABLE.sub(value, text)


def compose_with(variables: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate((REPO / "docker-compose.yml").read_text(), variables))


def env_file(name: str) -> dict[str, str]:
    lines = (REPO / name).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def load_settings(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start tally's settings with exactly this environment (plus what Python needs)."""
    essentials = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    code = "from django.conf import settings; print(settings.PAYSTACK_BASE_URL)"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**essentials, **environment, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def web_environment(variables: dict[str, str]) -> dict[str, str]:
    environment = dict(compose_with(variables)["services"]["web"]["environment"])
    environment.pop("PROMETHEUS_MULTIPROC_DIR")  # a directory inside the container
    return {name: str(value) for name, value in environment.items()}


def test_every_port_is_published_on_loopback_only():
    services = compose_with(PRODUCTION_VARIABLES)["services"]

    published = {name: s["ports"] for name, s in services.items() if "ports" in s}

    assert set(published) == {"web", "flower", "sandbox"}
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_stops_without_each_secret_and_has_no_default_for_it(missing):
    variables = {k: v for k, v in PRODUCTION_VARIABLES.items() if k != missing}

    with pytest.raises(MissingVariable, match=missing):
        compose_with(variables)
    with pytest.raises(MissingVariable, match=missing):
        compose_with({**variables, missing: ""})


def test_production_defaults_are_paystack_over_https_no_sandbox_and_named_hosts():
    web = web_environment(PRODUCTION_VARIABLES)

    assert web["DEBUG"] == "0"
    assert web["PAYSTACK_BASE_URL"] == "https://api.paystack.co"
    assert web["TALLY_SANDBOX"] == "0"
    assert "*" not in web["ALLOWED_HOSTS"]
    assert web["DJANGO_SECRET_KEY"] == PRODUCTION_VARIABLES["DJANGO_SECRET_KEY"]
    assert load_settings(web).returncode == 0


def test_the_sandbox_runs_only_in_the_dev_profile_and_flower_behind_loopback():
    services = compose_with(PRODUCTION_VARIABLES)["services"]

    assert services["sandbox"]["profiles"] == ["dev"]
    assert not [name for name in APP_SERVICES if "profiles" in services[name]]
    assert services["flower"]["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"  # in its container
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]


def test_the_dev_stack_has_the_sandbox_flag_and_its_settings_load():
    variables = {**env_file("compose.dev.env"), **PRODUCTION_VARIABLES}
    variables["PAYSTACK_SECRET_KEY"] = env_file("compose.dev.env")["PAYSTACK_SECRET_KEY"]
    web = web_environment(variables)

    loaded = load_settings(web)

    assert variables["COMPOSE_PROFILES"] == "dev"
    assert (web["TALLY_SANDBOX"], web["PAYSTACK_BASE_URL"]) == ("1", "http://sandbox:8001")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "http://sandbox:8001"


def test_the_sandbox_as_gateway_without_the_flag_is_refused_with_debug_0():
    """The attack: DEBUG=0 with the sandbox (open control API) as the gateway marked
    payments paid. Without TALLY_SANDBOX=1 tally must not start."""
    variables = {**PRODUCTION_VARIABLES, "PAYSTACK_BASE_URL": "http://sandbox:8001"}
    web = web_environment(variables)

    loaded = load_settings(web)

    assert web["DEBUG"] == "0" and web["TALLY_SANDBOX"] == "0"
    assert loaded.returncode != 0
    assert "PAYSTACK_BASE_URL must be https with DEBUG=0" in loaded.stderr


def dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if match := re.match(r"FROM \S+ AS (\w+)", line):
            current = match.group(1)
            stages[current] = []
        elif current and line and not line.startswith("#"):
            stages[current].append(line)
    return stages


def test_the_production_image_leaves_the_sandbox_tests_bench_and_devstack_out():
    stages = dockerfile_stages()
    production = stages["production"]
    copied = " ".join(line for line in production if line.startswith("COPY"))
    services = compose_with(PRODUCTION_VARIABLES)["services"]
    ignored = (REPO / ".dockerignore").read_text().split()

    assert list(stages)[-1] == "production"  # what a plain `docker build .` makes
    assert "COPY . ." not in production
    for left_out in ("sandbox", "tests", "bench", "devstack"):
        assert left_out not in copied
    for needed in ("config", "ledger", "webhooks", "tasks", "voting", "ops", "flowerconfig.py"):
        assert needed in copied
    for name in APP_SERVICES:
        assert services[name]["build"]["target"] == "production"
    assert services["sandbox"]["build"]["target"] == "dev"
    assert {"tests", "bench", "devstack"} <= set(ignored)
