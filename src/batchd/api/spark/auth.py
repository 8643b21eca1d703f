"""Who calls: ``Authorization: Bearer <key>``, or ``x-synthetic-key`` + ``x-tenant-name``.

The ``{tenant}`` in the path must be the key's tenant; another tenant's name is a
403 (``wrong_tenant``) whether or not that tenant exists.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from batchd.api.deps import Manager
from batchd.domain import errors
from batchd.domain.models import Principal


class WrongTenant(errors.Forbidden):
    code = "wrong_tenant"


async def spark_principal(request: Request, tenant: str, mgr: Manager) -> Principal:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    synthetic = request.headers.get("x-synthetic-key")
    if scheme.lower() == "bearer" and token.strip():
        principal = await mgr.authenticate(token.strip())
    elif synthetic:
        named = request.headers.get("x-tenant-name")
        if not named:
            raise errors.Unauthorized("x-synthetic-key needs the x-tenant-name header too")
        principal = await mgr.authenticate(synthetic.strip())
        if named.strip() != principal.tenant_name:
            raise WrongTenant(f"x-tenant-name {named!r} is not this key's tenant")
    else:
        raise errors.Unauthorized(
            "an API key is required: Authorization: Bearer <key>, "
            "or x-synthetic-key with x-tenant-name"
        )
    if tenant != principal.tenant_name:
        raise WrongTenant(f"this key does not belong to tenant {tenant!r}")
    return principal


SparkCaller = Annotated[Principal, Depends(spark_principal)]
