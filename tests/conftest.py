import pytest

from ledger.paystack import gateway


@pytest.fixture(autouse=True)
def fresh_gateway_client():
    """The client is cached per process; tests that change settings need a new one."""
    gateway.cache_clear()
    yield
    gateway.cache_clear()
