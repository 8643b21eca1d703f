"""The caller of a request, and the metering of that request.

Every authenticated request is counted once (``api_calls``) for the tenant's
billing period. A request that changes something passes its metering to the store
call that makes the change, so the count, the quota checks and the change commit
together or not at all; a request that reads is counted in a transaction of its
own before the read, which also refuses it once the call quota is used up. A
change refused before it reaches the store is still counted, on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from batchd.api.deps import Manager
from batchd.api.ingress import principal_of
from batchd.core import usage
from batchd.core.manager import BatchManager
from batchd.core.quotas import Limits, Metering
from batchd.domain import errors
from batchd.domain.models import Principal


@dataclass(slots=True)
class Call:
    principal: Principal
    limits: Limits
    mgr: BatchManager

    def metering(self) -> Metering:
        """This call's count and call quota, for the transaction of its change (which
        adds the quotas of what it changes)."""
        return usage.call_metering(self.principal.tenant_id, self.limits)

    async def read(self, *, enforce: bool = True) -> None:
        """Count a call that changes nothing; past the call quota it is refused, unless
        ``enforce`` is off (usage reads stay answered, to show why calls are refused)."""
        await self.mgr.meter(
            usage.call_metering(self.principal.tenant_id, self.limits, enforce=enforce)
        )

    @asynccontextmanager
    async def change(self) -> AsyncIterator[None]:
        """Around a change that passes :meth:`metering` to the store: a call refused
        before it committed is counted on its own (or refused past the call quota)."""
        try:
            yield
        except errors.BatchdError:
            await self.read()
            raise


async def caller(request: Request, mgr: Manager) -> Call:
    principal = principal_of(request)  # the ingress checked the key
    return Call(principal=principal, limits=mgr.limits_for(principal), mgr=mgr)


Caller = Annotated[Call, Depends(caller)]
