from django.apps import AppConfig
from django.conf import settings


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from webhooks.addresses import parse_allowlist

        # A typo in the allowlist stops start-up with a message naming it, instead of turning
        # every genuine delivery into a 500 later.
        parse_allowlist(tuple(settings.PAYSTACK_WEBHOOK_IPS))
