"""How a gateway call can fail: transient (retry later) or final (a person must look)."""


class GatewayError(Exception):
    """A gateway call did not give an answer we can act on."""


class GatewayUnavailable(GatewayError):
    """Transient: timeout, connection error, 5xx, 429 or an unreadable answer (also a 2xx
    that is not Paystack's JSON envelope, e.g. a proxy's page).

    Retry later; never read as 'failed'.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(GatewayUnavailable):
    """429: the gateway asks us to slow down, for `retry_after` seconds when it says."""


class GatewayRejected(GatewayError):
    """Final: the gateway refused the call (4xx, or a readable answer with `status: false`).

    Retrying the same call will not help.
    """


class TransactionNotFound(GatewayRejected):
    """The gateway knows no such transaction (by id or by reference)."""


class ReferenceNotFound(TransactionNotFound):
    """The gateway knows no transaction with this reference (not paid yet, or not ours)."""
