"""Who calls and what they may see: keys, tenants, roles, tiers, owner scoping."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from batchd.core import keys, quotas, roles
from batchd.core.quotas import Limits
from batchd.domain import errors
from batchd.domain.models import ApiKey, Batch, Principal, Role, Tier, new_id
from batchd.domain.records import BatchQuery

if TYPE_CHECKING:
    from batchd.core.db import Database

# The bootstrap key is the operator's: it manages tenants and every tenant's keys and is
# held to no tier. (Migration 006 finds the keys made before the operator role by this
# shape: tenant "default", owner "admin", tier enterprise, these limits.)
# A valid key is looked up again after this long (seconds): revoking a key on another
# server, or with the CLI, takes effect within it. KEY_CACHE_SIZE bounds the entries.
KEY_CACHE_S = 1.0
KEY_CACHE_SIZE = 10_000

OPERATOR_LIMITS = Limits(
    max_batch_size=quotas.UNLIMITED, api_calls=quotas.UNLIMITED, items=quotas.UNLIMITED,
    cost_usd=quotas.UNLIMITED,
)


def may_see(principal: Principal, batch: Batch) -> bool:
    return principal.sees_all_of_tenant or batch.owner == principal.owner


def owner_scope(principal: Principal) -> str | None:
    """The owner whose rows ``principal`` sees; None: the whole tenant's."""
    return None if principal.sees_all_of_tenant else principal.owner


def batch_query(principal: Principal, **filters: Any) -> BatchQuery:
    """A query over the batches ``principal`` may see, narrowed by ``filters``."""
    return BatchQuery(tenant_id=principal.tenant_id, owner=owner_scope(principal), **filters)


class Access:
    """Keys and tenants, the caller's limits, and the batches a caller may see."""

    def __init__(self, *, store: Database, clock: Callable[[], float],
                 tiers: Mapping[str, Limits], key_cache_s: float = KEY_CACHE_S) -> None:
        self.store = store
        self.clock = clock
        self.tiers = dict(tiers)
        # Valid keys seen lately, by hash: (good until, on time.monotonic(); the caller).
        # A revocation here clears it; one made elsewhere (another server, the CLI) takes
        # effect within key_cache_s. Unknown keys are never kept.
        self.key_cache_s = key_cache_s
        self._keys: dict[str, tuple[float, Principal]] = {}

    async def bootstrap_admin(self, admin_key: str | None) -> str | None:
        """Make sure an operator key exists: ``admin_key`` (stored, or made an operator if
        it is stored already), else a new one unless there is one; returns a newly
        generated key to print once."""
        tenant = await self.store.ensure_tenant("default", tier=Tier.ENTERPRISE, now=self.clock())
        if not admin_key and await self.store.count_keys(role=Role.OPERATOR):
            return None
        raw = admin_key or keys.generate_key()
        await self.store.ensure_key(
            key_id=new_id("key"), tenant_id=tenant.id, key_hash=keys.hash_key(raw),
            prefix=keys.display_prefix(raw), role=Role.OPERATOR, tier=Tier.ENTERPRISE,
            owner="admin", now=self.clock(), limits=dataclasses.asdict(OPERATOR_LIMITS),
        )
        return None if admin_key else raw

    async def authenticate(self, raw_key: str | None) -> Principal:
        if not raw_key:
            raise errors.Unauthorized("an API key is required")
        key_hash = keys.hash_key(raw_key)
        cached = self._keys.get(key_hash)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = await self.store.key_by_hash(key_hash)
        if found is None or not keys.matches(raw_key, found[1]):
            raise errors.Unauthorized("the API key is not valid")
        k = found[0]
        principal = Principal(
            key_id=k.id, tenant_id=k.tenant_id, tenant_name=k.tenant_name, role=k.role,
            tier=k.tier, owner=k.owner, limits=k.limits,
        )
        if self.key_cache_s > 0:
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[key_hash] = (time.monotonic() + self.key_cache_s, principal)
        return principal

    async def create_tenant(self, admin: Principal, name: str, *, tier: str) -> Any:
        roles.require_operator(admin, "creating a tenant")
        return await self.store.ensure_tenant(name, tier=tier, now=self.clock())

    async def create_key(
        self, admin: Principal, *, tenant: str, role: str, tier: str | None, owner: str | None,
        limits: dict[str, float] | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its raw value (shown once). An operator may name any tenant (a new
        one is created); an admin only its own, and gives no more than it has."""
        roles.check_key_tenant(admin, tenant)
        t = await self.store.ensure_tenant(tenant, tier=tier or Tier.FREE, now=self.clock())
        roles.check_key_grant(
            admin, role=role, own_limits=self.limits_for(admin),
            limits=quotas.limits_for(tier or t.tier, limits, tiers=self.tiers),
        )
        raw = keys.generate_key()
        key_id = new_id("key")
        key = ApiKey(
            id=key_id, tenant_id=t.id, tenant_name=t.name, role=role, tier=tier or t.tier,
            owner=owner or key_id, prefix=keys.display_prefix(raw), created_at=self.clock(),
            limits=limits or None,
        )
        await self.store.create_key(
            key_id=key.id, tenant_id=t.id, key_hash=keys.hash_key(raw), prefix=key.prefix,
            role=role, tier=key.tier, owner=key.owner, now=key.created_at, limits=key.limits,
        )
        return key, raw

    async def list_keys(self, admin: Principal) -> list[ApiKey]:
        """The keys of the admin's tenant; an operator's: every tenant's."""
        return await self.store.list_keys(roles.key_scope(admin))

    async def revoke_key(self, admin: Principal, key_id: str) -> None:
        await self.store.revoke_key_as(admin, key_id, now=self.clock())
        self._keys.clear()  # at once on this server

    def limits_for(self, principal: Principal) -> Limits:
        """The caller's limits: its key's tier, then the key's own overrides (the bootstrap
        key's lift them all)."""
        return quotas.limits_for(principal.tier, principal.limits, tiers=self.tiers)

    async def batch(self, principal: Principal, batch_id: str) -> Batch:
        """The batch, if ``principal`` may see it (else NotFound, whoever's it is)."""
        batch = await self.store.get_batch(batch_id, tenant_id=principal.tenant_id)
        if batch is None or not may_see(principal, batch):
            raise errors.NotFound(f"batch {batch_id} not found")
        return batch

    async def batch_for(
        self, principal: Principal, batch_id: str, *, task: str | None = None
    ) -> Batch:
        """The batch, for dialects that tell "not yours" (Forbidden) from "missing".

        Another tenant's batch, or one of another task than ``task``, is missing.
        """
        batch = await self.store.get_batch(batch_id, tenant_id=principal.tenant_id)
        if batch is None or (task is not None and batch.task != task):
            raise errors.NotFound(f"batch {batch_id} not found")
        if not may_see(principal, batch):
            raise errors.Forbidden(f"batch {batch_id} belongs to another user")
        return batch
