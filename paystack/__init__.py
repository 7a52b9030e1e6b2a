"""Paystack: the gateway client, its answers and its errors. The only code that talks to it.

`paystack.types` and `paystack.errors` are plain values any room may import; the client
(`paystack.client`) is used by the workflow (`tasks/`) and checkout (`voting/`) alone.
See docs/paystack.md for the gateway facts this package relies on.
"""
