"""``python -m sandbox``: run the Paystack stand-in. Flags override environment variables."""

from __future__ import annotations

import argparse
import logging
import os

from sandbox.server import make_server
from sandbox.state import FIRST_ID, MAX_ID

logger = logging.getLogger("sandbox")

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8000/webhooks/paystack/"
EPILOG = """\
Paystack API (Bearer key): POST /transaction/initialize, GET /transaction/verify/REF,
GET /transaction/ID, GET /transaction (offset or use_cursor=true), POST /refund,
GET /refund?transaction=ID, GET /refund/ID. Payer: GET /checkout/CODE (Pay, Decline).

Control API (no auth, JSON) under /_sandbox/: health, reset, stats, config, transactions,
transactions/REF/pay, transactions/REF/abandon, next-id, refunds, refunds/ID/finish,
refunds/ID/catch-up, disputes, disputes/ID/remind, disputes/ID/resolve, disputes/ID/send,
deliver, faults, overrides. Bodies and answers: the docstring of sandbox/server.py.
"""


def transaction_id(text: str) -> int:
    """A Paystack transaction id: unsigned 64-bit."""
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID):
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_ID}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Offline Paystack stand-in for tally.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument(
        "--first-id",
        type=transaction_id,
        default=transaction_id(env("SANDBOX_FIRST_ID") or str(FIRST_ID)),
        help=f"id of the first transaction; above {2**63 - 1} tests overflow handling "
        f"(unsigned 64-bit, up to {MAX_ID}; default {FIRST_ID})",
    )
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
        first_id=args.first_id,
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
