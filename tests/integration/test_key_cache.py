"""A server trusts a valid key it looked up for ``key_cache_s``: revoked on that server it
stops at once; revoked by another server (another Access on the same database), within
``key_cache_s``. Unknown keys are never remembered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchd.core import quotas
from batchd.core.access import Access
from batchd.core.db import Database
from batchd.domain import errors
from batchd.domain.models import Role
from batchd.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = Database(SqliteStore(f"sqlite:///{tmp_path / 'keys.db'}"))
    await d.open()
    yield d
    await d.close()


def access(db: Database, cache_s: float) -> Access:
    return Access(store=db, clock=time.time, tiers=quotas.DEFAULT_TIERS, key_cache_s=cache_s)


async def test_a_revoked_key_stops_at_once_here_and_within_the_cache_elsewhere(
    db: Database,
) -> None:
    here, there = access(db, 0.5), access(db, 0.5)
    admin_key = await here.bootstrap_admin(None)
    assert admin_key
    admin = await here.authenticate(admin_key)
    _, raw = await here.create_key(admin, tenant="acme", role=Role.USER, tier=None,
                                   owner="u1")
    user_here, user_there = await here.authenticate(raw), await there.authenticate(raw)
    assert user_here == user_there
    await here.revoke_key(admin, user_here.key_id)
    with pytest.raises(errors.Unauthorized):
        await here.authenticate(raw)  # this server forgot it when it revoked it
    assert await there.authenticate(raw) == user_there  # still within its 0.5 s
    await asyncio.sleep(0.6)
    with pytest.raises(errors.Unauthorized):
        await there.authenticate(raw)


async def test_no_cache_looks_every_key_up_and_unknown_keys_are_not_kept(
    db: Database,
) -> None:
    here, there = access(db, 0), access(db, 60)
    admin = await here.authenticate(await here.bootstrap_admin(None) or "")
    _, raw = await here.create_key(admin, tenant="acme", role=Role.USER, tier=None,
                                   owner="u1")
    user = await there.authenticate(raw)
    await there.revoke_key(admin, user.key_id)
    with pytest.raises(errors.Unauthorized):
        await here.authenticate(raw)  # key_cache_s 0: looked up again
    for _ in range(3):
        with pytest.raises(errors.Unauthorized):
            await there.authenticate("bd_not-a-key")
    assert len(there._keys) == 0
