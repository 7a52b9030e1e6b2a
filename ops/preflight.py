"""Checks PostgreSQL, Redis and the broker answer before anything starts, and says what to start.

`make up` runs it inside devstack.services, which has started private PostgreSQL and Redis where
the configured ones were silent: there only RabbitMQ's hint can show, and the database is created
in whichever PostgreSQL was chosen. `make services-check` runs it alone.
"""

import os
import socket
import sys
from urllib.parse import urlsplit

HINTS = {
    "PostgreSQL": (
        "start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
    ),
    "Redis": "start it: redis-server --daemonize yes --port 6379 --save ''",
    "RabbitMQ": "start it: rabbitmq-server -detached",
}
DEFAULT_PORTS = {"postgres": 5432, "postgresql": 5432, "redis": 6379, "amqp": 5672}


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS.get(parts.scheme, 0))
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    database = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tally")
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    broker = os.environ.get("CELERY_BROKER_URL") or redis
    needed = {"PostgreSQL": database, "Redis": redis}
    if broker.startswith("amqp"):
        needed["RabbitMQ"] = broker
    missing = [name for name, url in needed.items() if not reachable(url)]
    for name in missing:
        sys.stderr.write(f"{name} is not answering at {needed[name]}; {HINTS[name]}\n")
    if missing:
        return 1
    created = ensure_database(database)
    sys.stdout.write(
        "preflight: "
        + ", ".join(needed)
        + " answering"
        + ("; database created" if created else "")
        + "\n"
    )
    return 0


def ensure_database(url: str) -> bool:
    """Create the database DATABASE_URL names if it does not exist yet (a fresh machine)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = parts._replace(path="/postgres").geturl()
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if exists.fetchone():
            return False
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


if __name__ == "__main__":
    sys.exit(main())
