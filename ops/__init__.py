"""What operators run and read: health, readiness, the metrics view and make up's preflight.

May read every app; no app imports it.
"""
