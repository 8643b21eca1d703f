"""Records per item chosen for the task when a batch names none."""

from __future__ import annotations

from batchd.core import chunking
from batchd.core.chunking import Sample


def rpi(*, vectorised: bool = True, records: int, record_bytes: int, complete: bool) -> int:
    return chunking.records_per_item(vectorised=vectorised, sample=Sample(
        records=records, input_bytes=records * record_bytes, complete=complete))


def test_chunking_gives_a_per_record_task_one_record_per_item() -> None:
    assert rpi(vectorised=False, records=10_000, record_bytes=40, complete=False) == 1


def test_chunking_sizes_a_vectorised_task_by_records_then_bytes() -> None:
    # Small rows: the record target binds.
    assert rpi(records=10_000, record_bytes=45, complete=False) == chunking.TARGET_RECORDS
    # Large rows: the byte target binds first, so items stay about a megabyte.
    got = rpi(records=10_000, record_bytes=20_000, complete=False)
    assert got == chunking.TARGET_ITEM_BYTES // 20_000
    assert got * 20_000 <= chunking.TARGET_ITEM_BYTES
    # A record larger than the item target is an item of its own.
    assert rpi(records=10, record_bytes=4 << 20, complete=False) == 1


def test_chunking_spreads_a_small_batch_over_several_items() -> None:
    assert rpi(records=500, record_bytes=45, complete=True) == 32  # 16 items
    assert rpi(records=2, record_bytes=45, complete=True) == 1
    # Only when the whole upload was seen: a longer one is cut at the target.
    assert rpi(records=500, record_bytes=45, complete=False) == chunking.TARGET_RECORDS


def test_chunking_of_an_empty_create_is_one_record_per_item() -> None:
    assert rpi(records=0, record_bytes=0, complete=True) == 1
