"""Python clients for the native API."""

from batchd.client.async_client import AsyncClient
from batchd.client.base import BatchdConnectionError, BatchdHTTPError, Page
from batchd.client.sync_client import Client

__all__ = ["AsyncClient", "BatchdConnectionError", "BatchdHTTPError", "Client", "Page"]
