"""The local stack's machinery for the tests and the bench.

Starters for real processes (sandbox, gunicorn, Celery worker and beat) with their logs and
clean stops (processes.py), and the PostgreSQL and Redis they need: the running ones, or private
ones under .run/ (services.py). Imported by no product code, and left out of the production image.
"""
