"""Buffer limits: what may enter a batch's input buffer."""

from __future__ import annotations

from batchd.core import errors


class InputBufferFull(errors.Busy):
    """The upload does not fit the input buffer; nothing of it was stored. Retry later."""

    code = "input_buffer_full"


def input_buffer_full(
    size: int, *, batch_used: int, batch_limit: int | None, tenant_used: int,
    tenant_limit: int | None,
) -> InputBufferFull | None:
    """The error for an upload of ``size`` bytes that does not fit, else None."""
    if batch_limit is not None and batch_used + size > batch_limit:
        return InputBufferFull(
            f"input buffer full: the upload is {size} bytes and the batch's buffer has "
            f"{max(0, batch_limit - batch_used)} of {batch_limit} bytes free; "
            "retry when processing has drained it"
        )
    if tenant_limit and tenant_used + size > tenant_limit:
        return InputBufferFull(
            f"tenant input buffer full: the upload is {size} bytes and the tenant's buffers "
            f"have {max(0, tenant_limit - tenant_used)} of {tenant_limit} bytes free; "
            "retry when processing has drained them"
        )
    return None
