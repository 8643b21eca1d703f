"""Who calls: ``Authorization: Bearer <key>``, or ``x-synthetic-key`` + ``x-tenant-name``.

The ingress checks the key (:func:`spark_key` finds it); :func:`spark_principal` then
checks the tenant: the ``{tenant}`` in the path must be the key's tenant; another
tenant's name is a 403 (``wrong_tenant``) whether or not that tenant exists.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from batchd.api.ingress import principal_of
from batchd.domain import errors
from batchd.domain.models import Principal

MISSING_KEY = ("an API key is required: Authorization: Bearer <key>, "
               "or x-synthetic-key with x-tenant-name")


class WrongTenant(errors.Forbidden):
    code = "wrong_tenant"


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def spark_key(request: Request) -> str | None:
    synthetic = request.headers.get("x-synthetic-key", "").strip()
    return _bearer(request) or synthetic or None


async def spark_principal(request: Request, tenant: str) -> Principal:
    principal: Principal = principal_of(request)
    if _bearer(request) is None:  # the synthetic key: its tenant is named too
        named = request.headers.get("x-tenant-name")
        if not named:
            raise errors.Unauthorized("x-synthetic-key needs the x-tenant-name header too")
        if named.strip() != principal.tenant_name:
            raise WrongTenant(f"x-tenant-name {named!r} is not this key's tenant")
    if tenant != principal.tenant_name:
        raise WrongTenant(f"this key does not belong to tenant {tenant!r}")
    return principal


SparkCaller = Annotated[Principal, Depends(spark_principal)]
