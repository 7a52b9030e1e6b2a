"""The workflow: Celery tasks that process deliveries, verify payments, sweep and reconcile.

A Django app without models. Tasks take ids, ask the gateway outside any lock, and hand its
answer to ledger.services.
"""
