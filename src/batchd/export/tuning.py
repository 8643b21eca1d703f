"""The interpreter's settings while exports run (process-wide, restored after the last).

Profiling the CSV export of a million runs showed two costs that are not the work:

- The database is read in another thread (SQLite) while this one formats the previous
  page, but that thread needs the GIL a few times per page; with Python's default 5 ms
  switch interval it waits out most of the formatting and the two never overlap.
  Exports lower the interval to 0.5 ms.
- Every page parses thousands of small JSON objects; they are freed as soon as the
  page is written, but the cyclic garbage collector runs every 700 allocations and
  keeps walking them. Exports make its young generations ~15 times rarer.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator

SWITCH_INTERVAL_S = 0.0005
GC_THRESHOLDS = (10_000, 50)

_running = 0
_saved: tuple[float, tuple[int, int, int]] = (0.0, (0, 0, 0))


@contextlib.contextmanager
def tuned_for_export() -> Iterator[None]:
    """Lower the switch interval and the garbage collector's pace while exporting."""
    global _running, _saved
    if _running == 0:
        _saved = (sys.getswitchinterval(), gc.get_threshold())
        sys.setswitchinterval(min(SWITCH_INTERVAL_S, _saved[0]))
        first, second, third = _saved[1]
        gc.set_threshold(max(first, GC_THRESHOLDS[0]), max(second, GC_THRESHOLDS[1]), third)
    _running += 1
    try:
        yield
    finally:
        _running -= 1
        if _running == 0:
            sys.setswitchinterval(_saved[0])
            gc.set_threshold(*_saved[1])
