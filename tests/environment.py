"""Loaded as a pytest plugin (-p) before Django reads its settings: the test environment.

Values already in the environment win, so CI or a developer can point tests elsewhere.
Redis database 15 keeps test messages away from a `make up` stack on database 0.
"""

import os

TEST_ENVIRONMENT = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": "test-only-django-secret",
    "PAYSTACK_SECRET_KEY": "sk_test_tally_suite",
    "PAYSTACK_BASE_URL": "http://paystack.test",
    # The stubbed gateway and the sandbox answer over http, allowed with DEBUG=0 only so.
    "TALLY_SANDBOX": "1",
    "PAYSTACK_TIMEOUT": "2",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "ALLOWED_HOSTS": "*",
    "LOG_FORMAT": "json",
    "C_FORCE_ROOT": "1",
}

for name, value in TEST_ENVIRONMENT.items():
    os.environ.setdefault(name, value)
