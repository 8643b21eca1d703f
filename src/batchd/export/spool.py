"""Pages kept on disk between a writer's two passes.

The CSV writer must know every column before its first row, so it reads the rows
twice; rather than reading (and parsing) them from the database again, its first
pass keeps what the second needs in a temporary file (``TMPDIR``), one
length-prefixed ``marshal`` record per page, deleted when the export ends. The
server's memory stays one page whatever the number of rows.
"""

from __future__ import annotations

import marshal
import struct
import tempfile
from collections.abc import Iterator
from types import TracebackType
from typing import Any

_LENGTH = struct.Struct("<Q")


class Spool:
    def __init__(self) -> None:
        # Open across both passes, closed by close() / the with block.
        self._file = tempfile.TemporaryFile(prefix="batchd-export-")  # noqa: SIM115

    def put(self, record: Any) -> None:
        data = marshal.dumps(record)
        self._file.write(_LENGTH.pack(len(data)))
        self._file.write(data)

    def records(self) -> Iterator[Any]:
        """Every record put, in order."""
        self._file.flush()
        self._file.seek(0)
        read = self._file.read
        while True:
            head = read(_LENGTH.size)
            if not head:
                return
            yield marshal.loads(read(_LENGTH.unpack(head)[0]))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
