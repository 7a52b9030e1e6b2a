"""``python -m sandbox``: run the Paystack stand-in. Flags override environment variables."""

from __future__ import annotations

import argparse
import logging
import os

from sandbox.server import make_server

logger = logging.getLogger("sandbox")

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8000/webhooks/paystack/"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Offline Paystack stand-in for tally."
    )
    parser.add_argument("--host", default=env("SANDBOX_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(env("SANDBOX_PORT") or 8001))
    parser.add_argument(
        "--secret-key",
        default=env("PAYSTACK_SECRET_KEY") or "sk_test_sandbox",
        help="Bearer key the API requires; also the webhook signing key",
    )
    parser.add_argument(
        "--webhook-url",
        default=env("SANDBOX_WEBHOOK_URL") or DEFAULT_WEBHOOK_URL,
        help="where webhooks are POSTed",
    )
    parser.add_argument(
        "--public-url",
        default=env("SANDBOX_PUBLIC_URL") or None,
        help="base of authorization_url (default http://HOST:PORT)",
    )
    parser.add_argument("--webhook-retries", type=int, default=3, help="retries after a non-200")
    parser.add_argument("--webhook-retry-delay", type=float, default=1.0, help="seconds")
    parser.add_argument("--log-level", default=env("SANDBOX_LOG_LEVEL") or "INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = make_server(
        args.host,
        args.port,
        args.secret_key,
        args.webhook_url,
        args.public_url,
        webhook_retries=args.webhook_retries,
        webhook_retry_delay=args.webhook_retry_delay,
    )
    logger.info("Paystack sandbox on %s, webhooks to %s", server.url, args.webhook_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
