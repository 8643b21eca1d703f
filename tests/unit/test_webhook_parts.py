"""Webhook signing (the Standard Webhooks test vector), the retry schedule.

The URL policy: tests/unit/test_netguard.py.
"""

from __future__ import annotations

from batchd.events.webhooks import signing
from batchd.events.webhooks.schedule import RetrySchedule

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')


def test_signing_matches_the_standard_webhooks_test_vector() -> None:
    assert signing.sign(VECTOR_SECRET, *VECTOR) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signing_verify_accepts_rotation_and_refuses_replays() -> None:
    msg_id, stamp, body = VECTOR
    headers = signing.headers(VECTOR_SECRET, msg_id, stamp, body)
    assert signing.verify(VECTOR_SECRET, headers, body, now=stamp + 10)
    assert not signing.verify(VECTOR_SECRET, headers, body, now=stamp + 3600)  # too old
    assert not signing.verify(signing.new_secret(), headers, body, now=stamp)
    both = {**headers, "webhook-signature": f"v1,bm9wZQ== {headers['webhook-signature']}"}
    assert signing.verify(VECTOR_SECRET, both, body, now=stamp)
    assert not signing.verify(VECTOR_SECRET, {}, body, now=stamp)


def test_signing_secrets_are_whsec_and_32_bytes() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(signing.secret_key(secret)) == 32
    assert secret != signing.new_secret()


def test_schedule_spans_at_least_24_hours_with_exponential_backoff() -> None:
    s = RetrySchedule()
    assert [s.delay_s(n) for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert s.delay_s(40) == s.max_s
    created = 0.0
    at, attempt = created, 1
    while (nxt := s.next_attempt_at(attempt=attempt, created_at=created, now=at)) is not None:
        at, attempt = nxt, attempt + 1
    assert at - created >= 24 * 3600  # the last attempt comes a day or more after the event
    # 5 s doubling to 10,240 s (12 waits, 20,475 s), then every 3 hours: 20 attempts in all
    assert (attempt, at) == (20, 20_475 + 7 * 10_800)
    assert s.attempts_within_window() == attempt
