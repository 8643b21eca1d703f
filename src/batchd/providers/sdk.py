"""What the remote providers share: their vendor's SDK and async client, and the chat
request each job becomes."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any, ClassVar

from batchd.providers import base, prompts
from batchd.tasks.registry import TaskRegistry


class SdkProvider(base.Provider):
    """A provider reached through its vendor's official SDK (the ``providers`` extra).

    Args:
        registry: the job types' tasks (to render requests).
        api_key: the provider's API key.
        base_url: another endpoint than the provider's (a proxy, a test server).
        model: the model jobs run on, unless their task picks one.
        max_tokens: the answer's token cap.
        timeout_s: one SDK call's timeout.
    """

    sdk: ClassVar[str]
    """The SDK's module."""
    client_class: ClassVar[str]
    """Its async client class."""
    default_model: ClassVar[str]
    client: Any

    def __init__(
        self, *, registry: TaskRegistry, api_key: str | None, base_url: str | None = None,
        model: str | None = None, max_tokens: int = 1024, timeout_s: float = 120.0,
    ) -> None:
        try:
            self._sdk = importlib.import_module(self.sdk)
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise base.ProviderError(
                f"the {self.name} provider needs the SDK: pip install 'batchd[providers]'"
            ) from exc
        self.client = getattr(self._sdk, self.client_class)(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=3
        )
        self.registry = registry
        self.model = self.chat_model = model or self.default_model
        self.max_tokens = max_tokens

    def chat(self, request: base.JobRequest) -> prompts.ChatRequest:
        """The chat request of one job."""
        return prompts.render(self.registry, request.job_type, request.payload,
                              model=self.chat_model, max_tokens=self.max_tokens)

    @contextlib.contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """The SDK's errors inside become a :class:`ProviderError` saying ``what: …``."""
        try:
            yield
        except self._sdk.APIError as exc:
            raise base.ProviderError(f"{what}: {exc}") from exc

    async def close(self) -> None:
        await self.client.close()
