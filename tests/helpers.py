"""Helpers shared by the tests."""

import threading
from collections.abc import Callable

from django.db import connection

from ledger.services import Verification


def run_concurrently(work: Callable[[], object], *, times: int) -> list[object]:
    """Run `work` in `times` threads released together; re-raise the first error."""
    barrier = threading.Barrier(times)
    results: list[object] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            barrier.wait()
            results.append(work())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def success_for(payment, **changes) -> Verification:
    """The verification the gateway gives for a paid payment, with optional differences."""
    values = {
        "reference": payment.reference,
        "status": "success",
        "amount": payment.amount,
        "currency": payment.currency,
        "gateway_id": 4_099_260_516,
    }
    values.update(changes)
    return Verification(**values)
