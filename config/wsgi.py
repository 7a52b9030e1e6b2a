import os

from django.core.wsgi import get_wsgi_application

from config.tracing import configure_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before the handler is built: the Django instrumentation adds a middleware. gunicorn imports
# this module in each worker after the fork (unless --preload), where a tracer provider belongs.
configure_tracing(service="tally-web", django=True)
application = get_wsgi_application()
