import pytest
import redis

from ledger.paystack import gateway


@pytest.fixture(autouse=True)
def fresh_gateway_client():
    """The client is cached per process; tests that change settings need a new one."""
    gateway.cache_clear()
    yield
    gateway.cache_clear()


@pytest.fixture
def broker():
    """The real Redis broker (database 15 in tests), emptied before and after the test."""
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()
