"""/healthz and /readyz: liveness, and readiness naming what failed."""

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
def test_readyz_is_503_naming_redis_when_only_redis_is_down(client, settings):
    settings.REDIS_URL = CLOSED_PORT  # the broker stays where it was

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["postgresql"] == body["checks"]["broker"] == "ok"
    assert "ConnectionError" in body["checks"]["redis"]


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
    assert "OperationalError" in body["checks"]["postgresql"]
    assert body["checks"]["broker"] == "ok"
