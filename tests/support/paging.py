"""Reading a cursor-paged list of the native API (``data`` + ``next_cursor``) to its end."""

from __future__ import annotations

from typing import Any

import httpx

MAX_PAGES = 10_000  # a list that pages on beyond this does not end


def pages(c: httpx.Client, url: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of the list at ``url`` (``params`` on each request), in order."""
    out: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        r = c.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(body["data"])
        cursor = body["next_cursor"]
        if not cursor:
            return out
        assert len(out) < MAX_PAGES, "paging does not end"


def all_items(c: httpx.Client, batch_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a batch, in order (1000 a page unless ``params`` say otherwise)."""
    url = f"/api/batches/{batch_id}/items"
    return [item for page in pages(c, url, **{"limit": 1000, **params}) for item in page]
