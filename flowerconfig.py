"""Flower's configuration file: `celery -A config flower` reads it from the working directory.

Flower applies the FLOWER_* variables first and this file after them, so the values below
come from those variables again, checked (config/flower.py): Flower listens on 127.0.0.1
unless FLOWER_ADDRESS says otherwise, and refuses to start without a login, or with an empty,
short or example password.
"""

import os

from config.flower import UnsafeFlower, flower_options

try:
    _checked = flower_options(os.environ)
except UnsafeFlower as _problem:
    raise SystemExit(f"flower: {_problem}") from None

address = _checked.address
basic_auth = _checked.basic_auth
