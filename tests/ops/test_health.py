"""/healthz and /readyz: liveness, and readiness naming what failed (details in the log)."""

import logging

import pytest
from django.db import connection

CLOSED_PORT = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once


def test_healthz_answers_200_without_asking_anyone(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_postgresql_and_the_broker_answer(client, broker):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"postgresql": "ok", "broker": "ok"},
        "failing": [],
    }


@pytest.mark.django_db
def test_readyz_is_503_naming_redis_when_only_redis_is_down(client, settings, caplog):
    settings.REDIS_URL = CLOSED_PORT  # the broker stays where it was

    with caplog.at_level(logging.WARNING, logger="ops.health"):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"postgresql": "ok", "broker": "ok", "redis": "failing"},
        "failing": ["redis"],
    }
    logged = next(r for r in caplog.records if r.name == "ops.health")
    assert (logged.check, logged.getMessage()) == ("redis", "readiness check failing")
    assert "ConnectionError" in logged.error and "127.0.0.1:1" in logged.error


@pytest.mark.django_db
def test_readyz_is_503_naming_the_broker_when_it_is_down(client, settings):
    settings.CELERY_BROKER_URL = CLOSED_PORT

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["broker"]
    assert body["checks"]["redis"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_naming_postgresql_when_the_database_is_unreachable(
    client, broker, monkeypatch
):
    # The check runs on its own thread with its own connection, made from this same dict:
    # point it at a closed port (this thread's open connection is not touched).
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["postgresql"]
    assert body["checks"] == {"postgresql": "failing", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_tells_an_anonymous_caller_no_host_port_role_or_error(client, monkeypatch, settings):
    """Regression: the body carried the error text, naming the database host, port and role
    and the broker's address to anyone who could reach the port."""
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")
    monkeypatch.setitem(connection.settings_dict, "USER", "tally_role")
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:2/0"

    response = client.get("/readyz")

    text = response.content.decode()
    assert response.status_code == 503
    for secret in ("127.0.0.1", ":1", ":2", "tally_role", "redis://", "Error", "refused"):
        assert secret not in text
    assert response.json()["failing"] == ["broker", "postgresql"]
