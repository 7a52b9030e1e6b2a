"""Paystack signs the raw body with HMAC-SHA512 keyed by the secret key; we check the bytes."""

import hashlib
import hmac
from collections.abc import Iterable


def sign(body: bytes, key: str) -> str:
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def is_signed_by_any(body: bytes, signature: str | None, keys: Iterable[str]) -> bool:
    """True if `signature` is the HMAC of these exact bytes under one of `keys`.

    Every key is tried with a constant-time compare, so the answer's timing says nothing about
    which key matched or how much of the signature was right.
    """
    if not signature:
        return False
    provided = signature.strip().lower().encode()
    matched = False
    for key in keys:
        if key:
            matched |= hmac.compare_digest(sign(body, key).encode(), provided)
    return matched
