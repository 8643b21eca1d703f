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
    """A fresh secret: ``whsec_`` and the base64 of 32 random bytes."""
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
    """The three headers a delivery of ``body`` is sent with."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str, received: Mapping[str, str], body: bytes, *, tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether a webhook delivery is genuine: for receivers (and tests).

    Any of the space-separated ``v1,`` signatures may match (secrets being rotated).

    Args:
        secret: the tenant's signing secret as ``GET /api/webhooks/secret`` shows it,
            ``whsec_<base64>`` (the base64 part alone works too). The HMAC key is the
            base64-decoded bytes after ``whsec_``, not the string.
        received: the request's headers, any mapping (names in any case):
            ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.
        body: the request body, the exact bytes received (not re-encoded JSON).
        tolerance_s: how far ``webhook-timestamp`` may be from ``now``, either way,
            in seconds; an older (or later) delivery is refused, against replays.
        now: Unix seconds to judge the timestamp by; the current time when None.

    Returns:
        True when a signature matches and the timestamp is within the tolerance;
        False otherwise (a missing or malformed header included): it never raises.

    Example:
        >>> if not verify(secret, request.headers, await request.body()):
        ...     return Response(status_code=401)
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
