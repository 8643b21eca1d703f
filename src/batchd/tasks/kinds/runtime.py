"""The settings task kinds use when they run (the LLM endpoint, the outbound policy).

The task catalog configures them when a server or worker starts; a task kind used
outside one (a test, a script) falls back to the environment's settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchd.settings import Settings

_settings: Settings | None = None


def configure(settings: Settings) -> None:
    global _settings
    _settings = settings


def settings() -> Settings:
    global _settings
    if _settings is None:
        from batchd.settings import Settings

        _settings = Settings()
    return _settings
