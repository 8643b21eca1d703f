"""JSON bytes that are kept around (stored inputs, pending outputs)."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """``orjson.dumps`` trimmed to its length.

    orjson hands back buffers with spare capacity (4 KiB for a tiny object, far more
    for a large one); blobs that wait in memory for a database write would hold all
    of it, so they are copied to their exact size.
    """
    return memoryview(orjson.dumps(value)).tobytes()
