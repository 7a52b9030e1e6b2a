# The real-process fixtures of the end-to-end suite.
from tests.e2e.conftest import any_broker, sandbox, stack, web  # noqa: F401
