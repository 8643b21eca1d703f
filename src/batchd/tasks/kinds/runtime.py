"""The settings task kinds use when they run (the LLM endpoint, the outbound policy), and
the process's database for what they share with other processes (the model upstreams'
limits).

The task catalog configures them when a server or worker starts; a task kind used
outside one (a test, a script) falls back to the environment's settings and no database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchd.settings import Settings

_settings: Settings | None = None
_store: Any = None


def configure(settings: Settings, *, store: Any = None) -> None:
    global _settings, _store
    _settings = settings
    if store is not None:
        _store = store


def settings() -> Settings:
    global _settings
    if _settings is None:
        from batchd.settings import Settings

        _settings = Settings()
    return _settings


def store() -> Any:
    """The process's database (None outside a server or worker)."""
    return _store
