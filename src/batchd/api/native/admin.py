"""Tenants (operator keys) and keys (admin keys: their own tenant's; operator keys:
every tenant's), and the caller's usage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from batchd.api import jsonbody
from batchd.api.deps import Caller, Manager
from batchd.api.native.schemas import KeyCreate, TenantCreate
from batchd.domain.models import ApiKey, iso

router = APIRouter(tags=["admin"], route_class=jsonbody.PolicyRoute)


def key_json(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "tenant": k.tenant_name,
        "role": k.role,
        "tier": k.tier,
        "owner": k.owner,
        "prefix": k.prefix,
        "created_at": iso(k.created_at),
        "revoked_at": iso(k.revoked_at),
        "limits": k.limits,
    }


@router.post("/tenants", status_code=201)
async def create_tenant(body: TenantCreate, caller: Caller, mgr: Manager) -> dict[str, Any]:
    t = await mgr.create_tenant(caller, body.name, tier=body.tier)
    return {"id": t.id, "name": t.name, "tier": t.tier, "created_at": iso(t.created_at)}


@router.post("/keys", status_code=201)
async def create_key(body: KeyCreate, caller: Caller, mgr: Manager) -> dict[str, Any]:
    key, raw = await mgr.create_key(
        caller, tenant=body.tenant, role=body.role, tier=body.tier, owner=body.owner,
        limits=body.limits,
    )
    return {**key_json(key), "key": raw}


@router.get("/keys")
async def list_keys(caller: Caller, mgr: Manager) -> dict[str, Any]:
    return {"data": [key_json(k) for k in await mgr.list_keys(caller)]}


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, caller: Caller, mgr: Manager) -> Response:
    await mgr.revoke_key(caller, key_id)
    return Response(status_code=204)


@router.get("/usage")
async def usage(
    caller: Caller, mgr: Manager,
    period: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                                        description="YYYY-MM (UTC); this month by default")]
    = None,
) -> dict[str, Any]:
    """The caller's tenant's metered usage in one calendar month (UTC)."""
    period = period or datetime.now(UTC).strftime("%Y-%m")
    usage_ = await mgr.usage(caller, period)
    return {"tenant": caller.tenant_name, "period": period, "usage": usage_}
