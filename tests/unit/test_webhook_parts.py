"""Webhook signing (the Standard Webhooks test vector), the retry schedule, URL policy."""

from __future__ import annotations

import ipaddress

import pytest

from batchd import netguard
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


@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
    ("192.168.0.9", "private"), ("172.20.0.1", "private"), ("fd00::1", "private"),
    ("100.64.1.1", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "reserved"), ("224.0.0.1", "reserved"), ("::ffff:127.0.0.1", "loopback"),
])
def test_netguard_refuses_inner_addresses(address: str, kind: str) -> None:
    reason = netguard.OutboundPolicy().refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason


def test_netguard_policy_lets_through_what_it_names() -> None:
    policy = netguard.OutboundPolicy.parse("loopback, 10.2.0.0/16")
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.2.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("10.3.0.1")) is not None
    assert policy.refusal(ipaddress.ip_address("8.8.8.8")) is None
    with pytest.raises(ValueError):
        netguard.OutboundPolicy.parse("intranet")


async def test_netguard_checks_urls() -> None:
    policy = netguard.OutboundPolicy()
    refused = await netguard.refusals(
        ["https://1.1.1.1/hook", "http://127.0.0.1/x", "ftp://1.1.1.1/", "http://u:p@1.1.1.1/"],
        policy,
    )
    assert set(refused) == {"http://127.0.0.1/x", "ftp://1.1.1.1/", "http://u:p@1.1.1.1/"}
    target = await netguard.resolve("https://1.1.1.1:8443/a?b=1", policy)
    assert str(target.request_url()) == "https://1.1.1.1:8443/a?b=1"
    assert target.headers() == {"Host": "1.1.1.1:8443"}
