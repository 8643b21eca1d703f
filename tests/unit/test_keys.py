"""API keys: random, hashed, compared in constant time."""

from __future__ import annotations

import re

from batchd.core import keys


def test_keys_generated_with_prefix_and_enough_randomness() -> None:
    made = {keys.generate_key() for _ in range(50)}

    assert len(made) == 50
    for key in made:
        assert key.startswith(keys.KEY_PREFIX)
        secret = key[len(keys.KEY_PREFIX) :]
        assert len(secret) == 43  # 32 random bytes, URL-safe base64 without padding
        assert re.fullmatch(r"[A-Za-z0-9_-]+", secret)


def test_keys_hash_is_deterministic_and_not_the_key() -> None:
    key = keys.generate_key()

    assert keys.hash_key(key) == keys.hash_key(key)
    assert keys.hash_key(key) != key
    assert key not in keys.hash_key(key)
    assert keys.hash_key(key) != keys.hash_key(key + "x")
    assert re.fullmatch(r"[0-9a-f]{64}", keys.hash_key(key))


def test_keys_match_only_their_hash() -> None:
    key, other = keys.generate_key(), keys.generate_key()
    stored = keys.hash_key(key)

    assert keys.matches(key, stored)
    assert not keys.matches(other, stored)
    assert not keys.matches(key[:-1], stored)
    assert not keys.matches("", stored)


def test_keys_display_prefix_hides_the_secret() -> None:
    key = keys.generate_key()

    shown = keys.display_prefix(key)
    assert key.startswith(shown)
    assert len(shown) <= 12
    assert keys.hash_key(shown) != keys.hash_key(key)
