"""`python -m bench`: tally's throughput and latency next to bare baselines, on real processes.

The bench starts its own sandbox, gunicorn and Celery worker against a fresh `tally_bench`
database and Redis db 14, runs each scenario on a clean state, checks that every paid vote was
credited exactly once, and prints each figure with its ratio to a bare baseline on the same
servers. App code never imports this package.
"""
