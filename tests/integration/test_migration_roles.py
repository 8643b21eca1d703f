"""Migration 6 on both backends: a database made before the operator role, opened by this
version, has its bootstrap key as the operator and every other admin key still an admin."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchd.core import keys
from batchd.core.access import OPERATOR_LIMITS, Access
from batchd.core.db import Database
from batchd.core.quotas import DEFAULT_TIERS
from tests.conftest import scaled
from tests.support import old_schema

pytestmark = pytest.mark.timeout(scaled(30))

NOW = 1_700_000_000.0
BEFORE = 5  # the last migration without the operator role
BOOTSTRAP_LIMITS = orjson.dumps(dataclasses.asdict(OPERATOR_LIMITS))  # as bootstrap_admin
TENANTS = [("ten_default", "default", "enterprise"), ("ten_acme", "acme", "pro")]
# id, tenant, role, tier, owner, limits
KEYS: list[tuple[str, str, str, str, str, bytes | None]] = [
    ("key_boot", "ten_default", "admin", "enterprise", "admin", BOOTSTRAP_LIMITS),
    ("key_boot_old", "ten_default", "admin", "enterprise", "admin", None),  # before limits
    ("key_acme_admin", "ten_acme", "admin", "enterprise", "admin", BOOTSTRAP_LIMITS),
    ("key_default_admin", "ten_default", "admin", "enterprise", "ops", BOOTSTRAP_LIMITS),
    ("key_capped", "ten_default", "admin", "enterprise", "admin", b'{"items":-1}'),
    ("key_free_admin", "ten_default", "admin", "free", "admin", None),
    ("key_user", "ten_default", "user", "enterprise", "admin", BOOTSTRAP_LIMITS),
]
OPERATORS = {"key_boot", "key_boot_old"}


def rows() -> list[tuple[Any, ...]]:
    return [(kid, tenant, f"hash_{kid}", "bd_", role, tier, owner, NOW, limits)
            for kid, tenant, role, tier, owner, limits in KEYS]


INSERT_KEY = ("INSERT INTO api_keys (id, tenant_id, key_hash, prefix, role, tier, owner, "
              "created_at, limits) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})")
INSERT_TENANT = "INSERT INTO tenants (id, name, tier, created_at) VALUES ({p}, {p}, {p}, {p})"


def fill(cur: Any, p: str) -> None:
    cur.executemany(INSERT_TENANT.format(p=p), [(*t, NOW) for t in TENANTS])
    cur.executemany(INSERT_KEY.format(p=p), rows())


@pytest.fixture(params=old_schema.BACKENDS)
async def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with old_schema.old_database(request.param, tmp_path, BEFORE, fill) as store:
        yield store


async def test_migration_6_makes_the_bootstrap_key_the_operator(old_store: Database) -> None:
    roles = {k.id: k.role for k in await old_store.list_keys(None)}
    assert roles == {kid: ("operator" if kid in OPERATORS else role)
                     for kid, _, role, *_ in KEYS}
    # Nothing else about the keys changed.
    [boot] = [k for k in await old_store.list_keys("ten_default") if k.id == "key_boot"]
    assert (boot.owner, boot.tier, boot.limits) == ("admin", "enterprise",
                                                    orjson.loads(BOOTSTRAP_LIMITS))

    # An operator exists: the first start of the new version makes and prints no key.
    access = Access(store=old_store, clock=lambda: NOW + 1, tiers=DEFAULT_TIERS)
    assert await access.bootstrap_admin(None) is None
    assert len(await old_store.list_keys(None)) == len(KEYS)


async def test_bootstrap_admin_key_from_the_environment_becomes_the_operator(
    old_store: Database,
) -> None:
    # A BATCHD_ADMIN_KEY stored as an admin in a shape migration 6 does not know (here:
    # a tenant's admin) is made the operator at start, not stored twice.
    access = Access(store=old_store, clock=lambda: NOW + 1, tiers=DEFAULT_TIERS)
    raw = "env-admin-key"
    await old_store.create_key(key_id="key_env", tenant_id="ten_acme",
                               key_hash=keys.hash_key(raw), prefix="env", role="admin",
                               tier="pro", owner="o", now=NOW)
    assert await access.bootstrap_admin(raw) is None
    found = await old_store.key_by_hash(keys.hash_key(raw))
    assert found is not None and found[0].id == "key_env" and found[0].role == "operator"
    assert await old_store.count_keys(role="operator") == len(OPERATORS) + 1
