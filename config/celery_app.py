"""The Celery app. Configuration lives in Django settings under the CELERY_ namespace."""

import os

from celery import Celery
from kombu.exceptions import KombuError

from config.logging import stamp_task_ids

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# What publishing raises when the broker does not take a message (down, refusing, timing out).
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (KombuError, OSError)

app = Celery("tally")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django fixup closes the DB connection around every task unless this is set;
# reopening it for each task halves worker throughput. The fixup reads this exact key.
app.conf.CELERY_DB_REUSE_MAX = 1000
# Every log line written inside a task carries its id, even one formatted after it ends.
stamp_task_ids()
