"""Python clients for the native API."""

from batchd.client.async_client import AsyncClient
from batchd.client.base import BatchdHTTPError
from batchd.client.sync_client import Client

__all__ = ["AsyncClient", "BatchdHTTPError", "Client"]
