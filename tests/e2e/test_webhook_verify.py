"""The README's webhook verification snippets, run as written against a real delivery
(issue 14, point 6): the ``standardwebhooks`` package, ``batchd.events.webhooks.verify``
and the key derivation by hand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from typing import Any

import pytest
import standardwebhooks

from batchd.events.webhooks import verify
from tests.conftest import ROOT, Server, scaled, wait_batch, wait_until
from tests.support.receiver import Delivery, receiver

pytestmark = pytest.mark.timeout(scaled(120))

FAST = {"outbound_allow": "loopback", "webhook_poll_interval_s": "0.1",
        "webhook_retry_base_s": "0.1", "webhook_retry_max_s": "0.4"}
SNIPPETS = ("receive_with_standardwebhooks", "receive_with_batchd", "signature_ok")


def readme_snippets() -> dict[str, Callable[..., Any]]:
    """The functions the README's "## Webhooks" section defines in its Python blocks."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Webhooks\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    found: dict[str, Callable[..., Any]] = {}
    for block in blocks:
        namespace: dict[str, Any] = {}
        exec(compile(block, "README.md#webhooks", "exec"), namespace)
        found.update({name: namespace[name] for name in SNIPPETS if name in namespace})
    assert set(found) == set(SNIPPETS), f"README defines {sorted(found)}"
    return found


def random_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def delivered(server: Server) -> tuple[str, Delivery]:
    """A real ``batch.finished`` delivery, and the secret it was signed with."""
    with server.client() as c:
        secret = c.get("/api/webhooks/secret").json()["secret"]
        with receiver(secret) as rx:
            r = c.post("/api/batches", json={"task": "echo", "items": [{"a": 1}],
                                             "webhook_url": rx.url("/hook")})
            assert r.status_code == 201, r.text
            wait_batch(c, r.json()["id"])
            got = wait_until(lambda: rx.on("/hook"), what="the webhook")[0]
    assert got.json()["type"] == "batch.finished"
    return secret, got


def test_readme_snippets_verify_a_real_delivery(make_server: Callable[..., Server]) -> None:
    secret, got = delivered(make_server(**FAST))
    snippets = readme_snippets()
    title_case = {k.title(): v for k, v in got.headers.items()}  # as some frameworks give them
    for headers in (got.headers, title_case):
        assert snippets["receive_with_standardwebhooks"](secret, headers, got.body) == got.json()
        assert snippets["receive_with_batchd"](secret, headers, got.body) == got.json()
        assert snippets["signature_ok"](secret, headers, got.body) is True
    # Another secret, or a body changed by one byte: refused by each.
    for wrong_secret, body in ((random_secret(), got.body), (secret, got.body + b" ")):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            snippets["receive_with_standardwebhooks"](wrong_secret, got.headers, body)
        with pytest.raises(PermissionError):
            snippets["receive_with_batchd"](wrong_secret, got.headers, body)
        assert snippets["signature_ok"](wrong_secret, got.headers, body) is False


def test_the_hmac_key_is_the_decoded_part_after_whsec(make_server: Callable[..., Server]) -> None:
    secret, got = delivered(make_server(**FAST))
    signed = (f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode()
              + got.body)

    def signature(key: bytes) -> str:
        return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()

    sent = got.headers["webhook-signature"].split()
    decoded = base64.b64decode(secret.removeprefix("whsec_"))
    assert len(decoded) == 32
    assert signature(decoded) in sent
    # The readings the old README allowed are wrong: the string, with or without prefix.
    assert signature(secret.encode()) not in sent
    assert signature(secret.removeprefix("whsec_").encode()) not in sent


def test_verify_arguments_as_documented(make_server: Callable[..., Server]) -> None:
    secret, got = delivered(make_server(**FAST))
    stamp = int(got.headers["webhook-timestamp"])
    headers, body = got.headers, got.body
    assert verify(secret, headers, body, now=stamp + 299)
    assert not verify(secret, headers, body, now=stamp + 301)  # the default 300 s
    assert not verify(secret, headers, body, now=stamp - 301)
    assert verify(secret, headers, body, now=stamp + 3600, tolerance_s=3601)
    assert not verify(secret, headers, body, now=stamp + 11, tolerance_s=10)
    assert verify(secret.removeprefix("whsec_"), headers, body, now=stamp)  # the base64 alone
    # Any of several signatures (a rotation); a missing header is False, not an error.
    both = {**headers, "webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}
    assert verify(secret, both, body, now=stamp)
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert not verify(secret, {k: v for k, v in headers.items() if k != name}, body,
                          now=stamp)
