"""The local stack's machinery for the tests and the bench.

Starters for real processes (sandbox, gunicorn, Celery worker and beat) with their logs and
clean stops. Imported by no product code, and left out of the production image.
"""
