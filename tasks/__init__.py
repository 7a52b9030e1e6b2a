"""Celery tasks. Not a Django app, so config/celery_app.py lists these modules in imports."""
