"""Streaming NDJSON and CSV parsers, fed in arbitrary chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from batchd.core.ingest import csv_records, ndjson_records
from batchd.domain import errors

Parser = Callable[..., AsyncIterator[list[Any]]]


async def feed(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def parse(parser: Parser, data: bytes, *, size: int = 1 << 20, max_bytes: int = 1 << 20
                ) -> list[Any]:
    return [r async for part in parser(feed(data, size), max_record_bytes=max_bytes) for r in part]


async def parse_error(parser: Parser, data: bytes, *, size: int = 1 << 20) -> errors.InvalidInput:
    with pytest.raises(errors.InvalidInput) as caught:
        await parse(parser, data, size=size)
    return caught.value


RECORDS = [
    {"n": 1, "text": "plain"},
    {"n": 2, "text": "caf\u00e9 \u65e5\u672c", "nested": {"a": [1, 2, {"b": None}]}},
    {"n": 3, "text": "x" * 300},
    [1, "two", 3.5],
    "a bare string",
    42,
]


async def test_ndjson_records_across_every_chunk_size() -> None:
    data = b"\n".join(orjson.dumps(r) for r in RECORDS) + b"\n"

    for size in [1, 2, 3, 5, 7, 16, 64, 333, len(data)]:
        assert await parse(ndjson_records, data, size=size) == RECORDS, size


async def test_ndjson_records_yield_as_lines_arrive() -> None:
    parts = []
    async for part in ndjson_records(feed(b'{"a": 1}\n{"a": 2}\n{"a"', 9), max_record_bytes=100):
        parts.append(part)
        break
    assert parts == [[{"a": 1}]]


async def test_ndjson_records_skip_blank_lines() -> None:
    data = b'\n{"a": 1}\n\n   \n{"a": 2}\r\n\t\n{"a": 3}'

    assert await parse(ndjson_records, data, size=4) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert await parse(ndjson_records, b"\n\n  \n") == []
    assert await parse(ndjson_records, b"") == []


async def test_ndjson_records_invalid_line_names_the_line() -> None:
    data = b'{"a": 1}\n\n{"a": oops}\n{"a": 4}\n'

    for size in (1, 5, len(data)):
        err = await parse_error(ndjson_records, data, size=size)
        assert err.details["at"] == 2
        assert err.details["kind"] == "json_invalid"
        assert "line 3" in err.message


async def test_ndjson_records_invalid_last_line_without_newline() -> None:
    err = await parse_error(ndjson_records, b'{"a": 1}\n{"a": ')

    assert err.details["at"] == 1
    assert "line 2" in err.message


async def test_ndjson_records_refuse_an_overlong_record() -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        await parse(ndjson_records, b'{"a": "' + b"x" * 500 + b'"}\n', size=64, max_bytes=100)

    assert caught.value.details["at"] == 0


async def test_csv_records_convert_cells() -> None:
    data = b"i,f,neg,exp,word,empty,mixed\n7,2.5,-3,1e3,abc,,12ab\n"

    assert await parse(csv_records, data) == [
        {"i": 7, "f": 2.5, "neg": -3, "exp": 1000.0, "word": "abc", "empty": None, "mixed": "12ab"}
    ]


async def test_csv_records_keep_codes_that_only_look_numeric() -> None:
    data = b"zip,sep,plus,dots,nan,zero\n0150,1_000,+1,1.2.3,NaN,0\n"

    assert await parse(csv_records, data) == [
        {"zip": "0150", "sep": "1_000", "plus": "+1", "dots": "1.2.3", "nan": "NaN", "zero": 0}
    ]


async def test_csv_records_nest_dotted_headers() -> None:
    data = b"id,user.name,user.address.city,user.address.floor\n1,ann,Oslo,3\n"

    assert await parse(csv_records, data) == [
        {"id": 1, "user": {"name": "ann", "address": {"city": "Oslo", "floor": 3}}}
    ]


async def test_csv_records_quoted_cells_across_every_chunk_size() -> None:
    data = (
        b'name,note,n\n'
        b'"Smith, Ann","said ""hi""\nthen left",1\n'
        b'plain,"multi\nline\n\nvalue, with comma",2\r\n'
        b'"caf\xc3\xa9","",3\n'
    )
    expected = [
        {"name": "Smith, Ann", "note": 'said "hi"\nthen left', "n": 1},
        {"name": "plain", "note": "multi\nline\n\nvalue, with comma", "n": 2},
        {"name": "caf\u00e9", "note": None, "n": 3},
    ]

    for size in range(1, len(data) + 1):
        assert await parse(csv_records, data, size=size) == expected, size


async def test_csv_records_strip_bom() -> None:
    data = b"\xef\xbb\xbfa,b\n1,2\n"

    for size in (1, 2, 4, len(data)):
        assert await parse(csv_records, data, size=size) == [{"a": 1, "b": 2}]


async def test_csv_records_without_trailing_newline_or_with_blank_lines() -> None:
    assert await parse(csv_records, b"a,b\n\n1,2\n\n3,4", size=3) == [
        {"a": 1, "b": 2}, {"a": 3, "b": 4}
    ]


async def test_csv_records_header_only_is_empty() -> None:
    assert await parse(csv_records, b"a,b\n") == []


async def test_csv_records_too_many_cells_names_the_row() -> None:
    data = b"a,b\n1,2\n3,4,5\n6,7\n"

    for size in (1, 6, len(data)):
        err = await parse_error(csv_records, data, size=size)
        assert err.details["at"] == 2
        assert "row 2" in err.message


@pytest.mark.parametrize("body", [b"", b"\n\n", b"   \n"])
async def test_csv_records_missing_header(body: bytes) -> None:
    err = await parse_error(csv_records, body)

    assert "at" not in err.details
    assert "header" in err.message


@pytest.mark.parametrize("header", [b"a,,c\n1,2,3\n", b"a,b,a\n1,2,3\n"])
async def test_csv_records_bad_header(header: bytes) -> None:
    err = await parse_error(csv_records, header)

    assert err.details["at"] == 0
