"""Standard Webhooks signatures (https://www.standardwebhooks.com).

Every request carries ``webhook-id`` (the message id, the same on every attempt, for
de-duplication), ``webhook-timestamp`` (Unix seconds of the attempt) and
``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of
``"{webhook-id}.{webhook-timestamp}.{body}"`` under the tenant's secret. Secrets
look like ``whsec_<base64 of 32 random bytes>``; the HMAC key is the decoded bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret."""
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str, received: Mapping[str, str], body: bytes, *, tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether ``received`` headers sign ``body`` under ``secret`` (for receivers and tests).

    Any of the space-separated ``v1,`` signatures may match (secrets being rotated);
    a timestamp further than ``tolerance_s`` from ``now`` is refused (replays).
    """
    lowered = {k.lower(): v for k, v in received.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance_s:
        return False
    expected = sign(secret, msg_id, int(stamp), body)
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in lowered.get("webhook-signature", "").split()
    )
