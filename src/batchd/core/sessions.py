"""Dashboard sessions: sign in with an API key, act as it until signing out.

The browser holds a random token (in an HttpOnly cookie); the database holds its hash
(as it holds keys') and the key it acts as, so signing out, expiry or revoking the key
ends the session on every server. The CSRF token of a session is derived from the
session token: a page carries it, a cross-site form cannot know it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from batchd.core import keys
from batchd.core.access import Access
from batchd.domain.models import Principal

if TYPE_CHECKING:
    from batchd.core.db import Database

SESSION_TTL_S = 12 * 3600.0


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"batchd-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(session_token), given or "")


class Sessions:
    def __init__(self, *, store: Database, access: Access, clock: Callable[[], float],
                 ttl_s: float = SESSION_TTL_S) -> None:
        self.store = store
        self.access = access
        self.clock = clock
        self.ttl_s = ttl_s

    async def sign_in(self, raw_key: str | None) -> tuple[str, Principal]:
        """A new session for the key; its token (for the cookie) and the caller.

        Raises:
            errors.Unauthorized: no key, or not a valid one.
        """
        principal = await self.access.authenticate(raw_key)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        await self.store.create_session(keys.hash_key(token), key_id=principal.key_id,
                                        now=now, expires_at=now + self.ttl_s)
        return token, principal

    async def principal(self, token: str | None) -> Principal | None:
        """The caller a session acts as; None if it has ended (or never was)."""
        if not token:
            return None
        k = await self.store.session_key(keys.hash_key(token), now=self.clock())
        if k is None:
            return None
        return Principal(key_id=k.id, tenant_id=k.tenant_id, tenant_name=k.tenant_name,
                         role=k.role, tier=k.tier, owner=k.owner, limits=k.limits)

    async def sign_out(self, token: str | None) -> None:
        if token:
            await self.store.delete_session(keys.hash_key(token))
