"""The provider interface: where a flush sends its jobs, and where a poll reads results.

The interface itself is core's (:mod:`batchd.core.providers`: core flushes and polls
through it without importing this package); it is re-exported here for the
implementations, with the error they raise.
"""

from __future__ import annotations

from batchd.core.providers import BatchProgress, Fetched, JobRequest, Provider, ProviderResult
from batchd.domain import errors


class ProviderError(errors.BatchdError):
    """A provider refused or failed a call; nothing was changed on batchd's side."""

    code = "provider_error"
    http_status = 502


__all__ = ["BatchProgress", "Fetched", "JobRequest", "Provider", "ProviderError",
           "ProviderResult"]
