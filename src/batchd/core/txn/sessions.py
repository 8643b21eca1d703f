"""Dashboard sessions: stored as hashes, each bound to the key that signed in."""

from __future__ import annotations

from batchd.core.txn.keys import _key
from batchd.core.txn.runner import Runner
from batchd.domain.models import ApiKey
from batchd.store import script as q
from batchd.store.script import Script


def create(token_hash: str, key_id: str, now: float, expires_at: float) -> Script[None]:
    yield q.run("delete_expired_sessions", now)
    yield q.run("insert_session", token_hash, key_id, now, expires_at)


def key_of(token_hash: str, now: float) -> Script[ApiKey | None]:
    row = yield q.one("session_key", token_hash, now)
    return None if row is None else _key(row)


def delete(token_hash: str) -> Script[bool]:
    return bool((yield q.run("delete_session", token_hash)))


class SessionOps(Runner):
    async def create_session(self, token_hash: str, *, key_id: str, now: float,
                             expires_at: float) -> None:
        await self._write(create, token_hash, key_id, now, expires_at)

    async def session_key(self, token_hash: str, *, now: float) -> ApiKey | None:
        """The live key of a live session, or None."""
        return await self._read(key_of, token_hash, now)

    async def delete_session(self, token_hash: str) -> bool:
        return await self._write(delete, token_hash)
