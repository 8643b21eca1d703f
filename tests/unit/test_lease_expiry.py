"""The lease-expiry outcome (core/lifecycle.py): retry after the backoff, or fail."""

from __future__ import annotations

from batchd.core import lifecycle

LOST = {"code": "lease_expired", "message": "the worker running this item stopped"}


def test_lease_expiry_retries_after_the_backoff_of_its_attempt() -> None:
    first = lifecycle.lease_expiry(7, 4, attempts=1, max_attempts=3, retry_backoff_s=2.0,
                                   retry_backoff_max_s=5.0, now=100.0)

    assert (first.rowid, first.fence, first.status, first.error) == (7, 4, "queued", LOST)
    assert first.retry_at == 102.0


def test_lease_expiry_backoff_doubles_up_to_its_cap() -> None:
    at = [
        lifecycle.lease_expiry(1, 1, attempts=n, max_attempts=10, retry_backoff_s=2.0,
                               retry_backoff_max_s=5.0, now=0.0).retry_at
        for n in (1, 2, 3, 4)
    ]
    assert at == [2.0, 4.0, 5.0, 5.0]


def test_lease_expiry_fails_the_item_once_it_has_had_max_attempts() -> None:
    for attempts in (3, 4):
        last = lifecycle.lease_expiry(7, 4, attempts=attempts, max_attempts=3,
                                      retry_backoff_s=2.0, retry_backoff_max_s=5.0, now=100.0)
        assert (last.status, last.error, last.retry_at) == ("failed", LOST, 0.0)
