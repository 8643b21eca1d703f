"""batchd: a self-hosted batch-processing API server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from batchd.domain.cost import CostModel
from batchd.tasks.context import RecordError, TaskContext
from batchd.tasks.registry import Runner, task

if TYPE_CHECKING:
    from batchd.api.app import create_app
    from batchd.client import AsyncClient, Client
    from batchd.settings import Settings

__all__ = [
    "AsyncClient",
    "Client",
    "CostModel",
    "RecordError",
    "Runner",
    "Settings",
    "TaskContext",
    "__version__",
    "create_app",
    "task",
]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import batchd` in a task module stays light.
    if name == "create_app":
        from batchd.api.app import create_app

        return create_app
    if name in ("Client", "AsyncClient"):
        from batchd import client

        return getattr(client, name)
    if name == "Settings":
        from batchd.settings import Settings

        return Settings
    raise AttributeError(name)
