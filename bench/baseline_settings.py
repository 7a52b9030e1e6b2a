"""Settings of the baseline web process: tally's own, with the bench's URLs instead of tally's.

Everything else (middleware, database, broker, logging) stays tally's, so the baseline view is
served exactly as tally's endpoint is and the ratio measures only what the endpoint does.
Used as DJANGO_SETTINGS_MODULE of the baseline gunicorn only; `config.wsgi` keeps it.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.baseline_urls"
