# The real-process fixtures of the end-to-end suite: stack, sandbox, web.
from tests.e2e.conftest import sandbox, stack, web  # noqa: F401
