"""Tenants and API keys."""

from __future__ import annotations

from typing import Any

import orjson

from batchd.core import roles
from batchd.core.txn.runner import Runner
from batchd.domain import errors
from batchd.domain.models import ApiKey, Principal, Tenant, new_id
from batchd.store import script as q
from batchd.store.script import Script


def _tenant(r: Any) -> Tenant:
    return Tenant(id=r[0], name=r[1], tier=r[2], created_at=r[3])


def _key(r: Any) -> ApiKey:
    # key columns: id, tenant_id, tenant name, role, tier, owner, prefix, created_at,
    # revoked_at, key_hash, limits
    return ApiKey(
        id=r[0], tenant_id=r[1], tenant_name=r[2], role=r[3], tier=r[4], owner=r[5],
        prefix=r[6], created_at=r[7], revoked_at=r[8],
        limits=orjson.loads(r[10]) if r[10] else None,
    )


def ensure_tenant(name: str, tier: str, now: float) -> Script[Tenant]:
    yield q.run("insert_tenant", new_id("ten"), name, tier, now)
    return _tenant((yield q.one("tenant_by_name", name)))


def get_tenant(name: str) -> Script[Tenant | None]:
    row = yield q.one("tenant_by_name", name)
    return None if row is None else _tenant(row)


def create_key(row: tuple[Any, ...]) -> Script[None]:
    yield q.run("insert_key", *row)


def ensure_key(row: tuple[Any, ...], role: str) -> Script[None]:
    # The key may exist already (the same BATCHD_ADMIN_KEY at every start): it gets ``role``.
    yield q.run("insert_key", *row)
    yield q.run("set_role_by_hash", role, row[2])


def key_by_hash(key_hash: str) -> Script[tuple[ApiKey, str] | None]:
    row = yield q.one("live_key_by_hash", key_hash)
    return None if row is None else (_key(row), row[9])


def list_keys(tenant_id: str | None) -> Script[list[ApiKey]]:
    rows = yield q.rows("keys_of_tenant", tenant_id, tenant_id)
    return [_key(r) for r in rows]


def revoke_key(key_id: str, now: float) -> Script[bool]:
    return (yield q.run("revoke_key", now, key_id)) == 1


def revoke_key_as(principal: Principal, key_id: str, now: float) -> Script[None]:
    row = yield q.one("key_by_id", key_id)
    roles.check_revoke(principal, None if row is None else _key(row))
    if (yield q.run("revoke_key", now, key_id)) != 1:
        raise errors.NotFound("key not found")


def count_keys(role: str) -> Script[int]:
    return int((yield q.value("count_live_keys", role)))


class KeyOps(Runner):
    async def ensure_tenant(self, name: str, *, tier: str, now: float) -> Tenant:
        return await self._write(ensure_tenant, name, tier, now)

    async def get_tenant(self, name: str) -> Tenant | None:
        return await self._read(get_tenant, name)

    async def create_key(
        self, *, key_id: str, tenant_id: str, key_hash: str, prefix: str, role: str,
        tier: str, owner: str, now: float, limits: dict[str, float] | None = None,
    ) -> None:
        """Store a key; ``limits`` overrides some of its tier's limits."""
        await self._write(create_key, (key_id, tenant_id, key_hash, prefix, role, tier, owner,
                                       now, orjson.dumps(limits) if limits else None))

    async def ensure_key(
        self, *, key_id: str, tenant_id: str, key_hash: str, prefix: str, role: str,
        tier: str, owner: str, now: float, limits: dict[str, float] | None = None,
    ) -> None:
        """Store a key, or give the stored key with this hash ``role``."""
        await self._write(ensure_key, (key_id, tenant_id, key_hash, prefix, role, tier, owner,
                                       now, orjson.dumps(limits) if limits else None), role)

    async def key_by_hash(self, key_hash: str) -> tuple[ApiKey, str] | None:
        """The live key with this hash, and the stored hash (for a constant-time compare)."""
        return await self._read(key_by_hash, key_hash)

    async def list_keys(self, tenant_id: str | None) -> list[ApiKey]:
        return await self._read(list_keys, tenant_id)

    async def revoke_key(self, key_id: str, *, now: float) -> bool:
        return await self._write(revoke_key, key_id, now)

    async def revoke_key_as(self, principal: Principal, key_id: str, *, now: float) -> None:
        """Revoke a live key if ``principal`` may (raises NotFound or Forbidden)."""
        await self._write(revoke_key_as, principal, key_id, now)

    async def count_keys(self, *, role: str) -> int:
        return await self._read(count_keys, role)
