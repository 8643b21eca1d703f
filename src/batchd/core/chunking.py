"""Records per item when a batch does not say: sized to the task (pure; no I/O).

A vectorised task takes a whole item in one call, so one record per item pays the
engine's per-item cost (a claim, a lease, an outcome row, counters) for every record;
items of many records pay it once per item. A per-record task gets one record per
item: each record is then scheduled, retried and cancelled on its own.

:func:`records_per_item` decides from the first records of the upload that creates the
batch (:data:`SAMPLE_RECORDS` at most, read before anything is stored): items of about
:data:`TARGET_RECORDS` records or :data:`TARGET_ITEM_BYTES` bytes of input, whichever
comes first; and when the whole upload fits in the sample, at least
:data:`MIN_ITEMS` items, so a small batch still spreads over the workers. The choice is
the batch's ``records_per_item`` from then on (appends use it too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TARGET_RECORDS = 1000
TARGET_ITEM_BYTES = 1024 * 1024
MIN_ITEMS = 16
MAX_RECORDS_PER_ITEM = 100_000  # the most an explicit records_per_item may be, too
# How many records are read ahead to decide (bounded memory: they are held meanwhile).
SAMPLE_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class Sample:
    """The first records of an upload: how many, their size as stored, and whether
    they are all of it (the upload ended within the sample)."""

    records: int
    input_bytes: int
    complete: bool


def records_per_item(*, vectorised: bool, sample: Sample) -> int:
    """Records per item for a batch that does not name its own.

    Args:
        vectorised: the task takes all records of an item in one call.
        sample: the first records of the upload that creates the batch.
    """
    if not vectorised or sample.records == 0:
        # An empty create (an open batch fed later) has nothing to size items by.
        return 1
    per_record = max(1.0, sample.input_bytes / sample.records)
    rpi = min(TARGET_RECORDS, int(TARGET_ITEM_BYTES // per_record))
    if sample.complete:
        rpi = min(rpi, math.ceil(sample.records / MIN_ITEMS))
    return max(1, min(rpi, MAX_RECORDS_PER_ITEM))
