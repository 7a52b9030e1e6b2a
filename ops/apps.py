from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Health, metrics and tally's deployment checks; no models."""

    name = "ops"

    def ready(self) -> None:
        from ops import checks  # noqa: F401  (registers the checks)
