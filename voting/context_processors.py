"""What every page's template needs to know besides its own view's context."""

from django.conf import settings
from django.http import HttpRequest


def sandbox(request: HttpRequest) -> dict[str, bool]:
    """`tally_sandbox`: the gateway is the sandbox, so the base template shows its banner."""
    return {"tally_sandbox": settings.TALLY_SANDBOX}
