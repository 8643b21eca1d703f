"""Bulk intake: records packed into one JSON array per group, NDJSON parsed a block at once.

A packed group must describe exactly the items that one StagedItem per record would:
the same input bytes, sizes, estimates and grouping; an NDJSON block parsed at once must
refuse what line-by-line parsing refused, naming the same line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from batchd.core import staging
from batchd.core.ingest import json_array_records, ndjson_records
from batchd.domain import codec, errors, jsonpolicy
from batchd.domain.cost import CostModel
from batchd.domain.models import BatchSpec
from batchd.domain.records import StagedItem
from batchd.tasks.registry import TaskDef

TRICKY: list[Any] = [
    {"text": "caf\u00e9 \u65e5\u672c \U0001f600", "quote": '"\\/', "ctl": "\x00\x01\x1f\n\t\x7f"},
    {"floats": [0.1, 0.30000000000000004, 1e300, -0.0, 5e-324, 1.5e16, 123456.789]},
    {"ints": [2**63 - 1, -(2**63), 0, -1], "flags": [True, False, None]},
    {"empty": {}, "list": [], "s": ""},
    [1, "two", [3, [4, {"five": 5}]]],
    [],
    {},
    {"\u2028key\u2029": "line separators", "k\u00e9y": {"n\u00e9sted": [{"deep": [[[[1]]]]}]}},
]


def task(cost: CostModel | None = None) -> TaskDef:
    return TaskDef(name="echo", version="1.0.0", handler=lambda r: r,
                   cost=cost or CostModel(per_record_usd=0.1, per_item_usd=0.02))


async def parts(records: list[Any], size: int) -> AsyncIterator[list[Any]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


async def groups(records: list[Any], *, part: int = 10_000, flush_items: int = 5000,
                 t: TaskDef | None = None, rpi: int = 1) -> list[staging.Group]:
    spec = BatchSpec(task="echo", version="1.0.0", records_per_item=rpi)
    return [g async for g in staging.item_groups(
        t or task(), spec, parts(records, part), flush_items=flush_items, max_items=10**9)]


def items_of(group: staging.Group) -> list[tuple[bytes, float]]:
    """(input, estimate) of each item of a group, however it is held."""
    if isinstance(group, staging.PackedItems):
        inputs = [codec.dumps(v) for v in orjson.loads(group.inputs)]
        return [(i, group.est_usd) for i in inputs]
    return [(i.input, i.est_usd) for i in group]


def many(n: int) -> list[Any]:
    return [TRICKY[i % len(TRICKY)] if i % 3 else {"i": i, "sku": f"SKU-{i}"}
            for i in range(n)]


async def test_packed_group_inputs_are_each_records_own_bytes() -> None:
    records = many(1234)

    got = await groups(records, part=500, flush_items=400)

    assert all(isinstance(g, staging.PackedItems) for g in got)
    packed = [g for g in got if isinstance(g, staging.PackedItems)]
    joined = b"[" + b",".join(codec.dumps(r) for r in records) + b"]"
    assert b"[" + b",".join(p.inputs[1:-1] for p in packed) + b"]" == joined
    assert [p.count for p in packed] == [400, 400, 400, 34]
    for p, start in zip(packed, range(0, 1234, 400), strict=True):
        chunk = records[start : start + p.count]
        assert p.inputs == orjson.dumps(chunk)
        assert p.size == sum(len(codec.dumps(r)) for r in chunk)
        assert p.est_usd == 0.1 + 0.02
        assert p.est_total == sum(0.1 + 0.02 for _ in chunk)


async def test_packed_groups_cut_where_one_item_per_record_groups_cut() -> None:
    big = [{"blob": "x" * 3000, "i": i} for i in range(3000)]  # parts of 9 MB: cut by bytes

    packed = await groups(big, part=1500, flush_items=5000)
    one_by_one = await groups(big, part=1500, flush_items=5000,
                              t=task(CostModel(per_record=lambda r: 0.0)))

    assert all(isinstance(g, staging.PackedItems) for g in packed)
    assert all(isinstance(g, list) for g in one_by_one)
    assert [len(items_of(g)) for g in packed] == [len(items_of(g)) for g in one_by_one]
    assert [len(items_of(g)) for g in packed] == [1500, 1500]


async def test_scalar_records_and_costs_that_depend_on_the_input_stay_one_item_each() -> None:
    records = [*TRICKY, "a bare string", 42, 1.5, None, True]

    scalars = await groups(records)
    by_length = CostModel(per_item_usd=0.02, per_record=lambda r: len(str(r)) / 100)
    priced = await groups(TRICKY, t=task(by_length))

    assert [type(g) for g in scalars] == [list]
    assert items_of(scalars[0]) == [(codec.dumps(r), 0.1 + 0.02) for r in records]
    assert [type(g) for g in priced] == [list]
    assert items_of(priced[0]) == [(codec.dumps(r), by_length.estimate_item([r])) for r in TRICKY]


async def test_a_group_holds_one_kind_and_the_upload_keeps_its_order() -> None:
    n = len(TRICKY)
    records = [*TRICKY, *["scalar"] * n, *TRICKY, *[7] * (n - 1), {}, *TRICKY]

    got = await groups(records, part=n, flush_items=100)  # a part with a scalar: unpacked

    kinds = [type(g).__name__ for g in got]
    assert kinds == ["PackedItems", "list", "PackedItems", "list", "PackedItems"]
    assert [i for g in got for i, _ in items_of(g)] == [codec.dumps(r) for r in records]


async def test_records_per_item_chunks_are_unchanged() -> None:
    records = many(25)

    got = await groups(records, rpi=10)

    assert [type(g) for g in got] == [list]
    group = got[0]
    assert isinstance(group, list)
    assert [(i.n_records, i.input) for i in group] == [
        (10, codec.dumps(records[:10])), (10, codec.dumps(records[10:20])),
        (5, codec.dumps(records[20:])),
    ]


def test_tally_counts_a_packed_group_as_its_items() -> None:
    records = many(10)
    packed = staging.PackedItems(count=10, inputs=orjson.dumps(records),
                                 size=sum(len(codec.dumps(r)) for r in records), est_usd=0.5,
                                 est_total=5.0)
    rows = [StagedItem(1, codec.dumps(r), 0.5) for r in records]
    a, b = staging.Tally(), staging.Tally()

    a.add(packed)
    b.add(rows)

    assert (a.items, a.est_usd, a.size) == (b.items, b.est_usd, b.size) == (10, 5.0, packed.size)


async def test_json_array_records_pack_a_whole_body() -> None:
    records = many(25_000)

    got = [g async for g in staging.item_groups(
        task(), BatchSpec(task="echo", version="1.0.0"), json_array_records(records),
        flush_items=5000, max_items=10**9)]

    assert [g.count for g in got if isinstance(g, staging.PackedItems)] == [5000] * 5


async def feed(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def ndjson(data: bytes, size: int = 1 << 20) -> list[Any]:
    return [r async for part in ndjson_records(feed(data, size), max_record_bytes=1 << 20)
            for r in part]


async def ndjson_error(data: bytes, size: int = 1 << 20) -> errors.InvalidInput:
    with pytest.raises(errors.InvalidInput) as caught:
        await ndjson(data, size)
    return caught.value


async def test_ndjson_block_parses_to_the_same_records_in_any_chunks() -> None:
    records = many(2000)
    data = b"\n".join(orjson.dumps(r) for r in records) + b"\n"

    for size in (7, 4096, 65536, len(data)):
        assert await ndjson(data, size) == records


WIDE = b'{"n": 123456789012345678901}'
DEEP = b"[" * 65 + b"]" * 65


@pytest.mark.parametrize(("lines", "at", "problem"), [
    ([b'{"a": 1}', WIDE, b'{"c": 3}'], 1, "outside the signed 64-bit range"),
    ([b'{"a": 1}', b"[1, 2]", DEEP], 2, "nesting is deeper than the limit of 64 levels"),
    ([b'{"a": 1}', b'{"b": NaN}', WIDE], 1, "NaN is not a JSON number"),
    ([b'{"a": 1}', WIDE, b'{"b": NaN}'], 1, "outside the signed 64-bit range"),
    ([b'{"a": 1}', b"   ", b'{"s": "\\ud800"}'], 2, "lone UTF-16 surrogate"),
    ([b'{"a": 1}', b"1, 2", b"[3", b"4]"], 1, "not valid JSON"),
    ([b'"a', b'b"', b"1, 2"], 0, "not valid JSON"),
])
async def test_ndjson_block_names_the_first_line_refused(
    lines: list[bytes], at: int, problem: str
) -> None:
    exc = await ndjson_error(b"\n".join(lines) + b"\n")

    assert exc.details["at"] == at
    assert exc.message.startswith(f"line {at + 1}")
    assert problem in exc.message


async def test_ndjson_digits_in_strings_and_deep_looking_text_are_accepted() -> None:
    records = [{"sku": "12345678901234567890123"}, {"text": "[" * 100 + "{" * 100}, [[[1]]]]

    assert await ndjson(b"\n".join(orjson.dumps(r) for r in records)) == records


def test_policy_keeps_many_19_digit_integers_in_range_and_refuses_the_one_beyond() -> None:
    items = [{"ts": 1_700_000_000_000_000_000 + i, "min": -(2**63), "s": "9" * 30,
              "f": 1.5, "e": "1.99999999999999999999"} for i in range(1000)]
    body = orjson.dumps({"items": items})

    assert jsonpolicy.loads(body) == {"items": items}
    assert jsonpolicy.loads(b"[1.99999999999999999999, 1e-1234567890123456789]") == [2.0, 0.0]
    wide = body[:-3] + b', "late": 9223372036854775808}]}'
    with pytest.raises(errors.InvalidInput) as caught:
        jsonpolicy.loads(wide)
    assert caught.value.details["path"] == ["items", 999, "late"]
    assert "outside the signed 64-bit range" in caught.value.message


@pytest.mark.parametrize("token", [b"9223372036854775808", b"-9223372036854775809",
                                   b"18446744073709551616", b"123456789012345678901234567"])
async def test_ndjson_integers_beyond_64_bits_are_refused_among_19_digit_ones(
    token: bytes,
) -> None:
    lines = [b'{"ts": 1700000000000000000, "n": -9223372036854775808}'] * 5
    lines[3] = b'{"ts": ' + token + b"}"

    exc = await ndjson_error(b"\n".join(lines) + b"\n")

    assert exc.details["at"] == 3
    assert "outside the signed 64-bit range" in exc.message
