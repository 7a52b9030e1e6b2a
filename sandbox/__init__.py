"""An offline stand-in for the Paystack API, for tests, demos and benchmarks.

Run it with ``python -m sandbox`` (see ``--help``). It speaks the slice of Paystack that tally
uses (initialize, a checkout page, verify, fetch and list transactions, refunds and the refund
API, disputes, signed webhooks) and adds a control API under ``/_sandbox/`` to inject faults,
override what verify reports, carry refunds and disputes along, and shape webhook delivery
(duplicates, late, out of order); ``sandbox/server.py`` documents every route. It depends on
the standard library and ``requests`` only, never on Django, so it is also a runnable
description of how the gateway behaves (see docs/paystack.md).
"""
