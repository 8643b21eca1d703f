"""API keys: random secrets, shown once, stored as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "bd_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash cannot be brute-forced; a slow KDF
    # would only add latency to every request.
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)


def display_prefix(key: str) -> str:
    return key[:10]
