"""Where the AI job queue sends its flushes: one interface, one module per provider.

``local`` (the engine itself, the default), ``anthropic`` (Message Batches) and
``openai`` (Batch API). Providers are built when first used, from settings; a
remote provider needs the ``providers`` extra (the official SDKs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchd.domain import errors
from batchd.providers.base import Provider, ProviderError

if TYPE_CHECKING:
    from batchd.core.manager import BatchManager
    from batchd.settings import Settings

NAMES = ("local", "anthropic", "openai")


class Providers:
    """The configured providers by name, built on first use."""

    def __init__(self, *, settings: Settings, manager: BatchManager) -> None:
        self.settings = settings
        self.manager = manager
        self.default = settings.aibatch_provider
        self._built: dict[str, Provider] = {}

    def __call__(self, name: str | None = None) -> Provider:
        name = name or self.default
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def add(self, provider: Provider) -> None:
        """Use ``provider`` under its name (tests, or a provider of your own)."""
        self._built[provider.name] = provider

    def _build(self, name: str) -> Provider:
        s = self.settings
        registry = self.manager.registry
        if name == "local":
            from batchd.providers.local import LocalProvider

            return LocalProvider(manager=self.manager, model=s.aibatch_local_model,
                                 parallelism=s.default_parallelism,
                                 max_attempts=s.default_max_attempts)
        if name == "anthropic":
            from batchd.providers.anthropic_batches import AnthropicBatches

            return AnthropicBatches(
                registry=registry, api_key=s.aibatch_anthropic_api_key,
                base_url=s.aibatch_anthropic_base_url,
                model=s.aibatch_anthropic_model, max_tokens=s.aibatch_max_tokens,
            )
        if name == "openai":
            from batchd.providers.openai_batches import OpenAIBatches

            return OpenAIBatches(
                registry=registry, api_key=s.aibatch_openai_api_key,
                base_url=s.aibatch_openai_base_url,
                model=s.aibatch_openai_model, max_tokens=s.aibatch_max_tokens,
            )
        raise errors.InvalidInput(f"unknown provider {name!r}; known: {list(NAMES)}")

    async def close(self) -> None:
        for provider in self._built.values():
            await provider.close()


__all__ = ["NAMES", "Provider", "ProviderError", "Providers"]
