"""PostgreSQL array parameters written as text by batchd (store.postgres.scripts.pg_array)
read back as the values themselves, whatever the values."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest

from batchd.store.postgres.scripts import pg_array
from tests.conftest import PG_ADMIN_URL

COLUMNS: list[tuple[str, list[Any]]] = [
    ("bigint", [1, -2, 0, 2**63 - 1, -(2**63)]),
    ("float8", [1.5, -0.0, 1e16, 5e-324, 1.7976931348623157e308, 3, 0.1 + 0.2]),
    ("float8", [1.0, math.inf, -math.inf, math.nan]),  # as psycopg writes them
    ("float8", [None, 2.5]),
    ("bytea", [b'{"a":"x,y"}', b"", b"\x00\xff\\\"'{}", b"null"]),
    ("bytea", [None, b"x", None]),
    ("bytea", [None, None]),
    ("text", ["succeeded", "failed", "cancelled"]),
    ("text", ["null", "NULL", "a b", "a,b", 'q"', "b\\s", "{x}", "", "日本"]),
    ("text", ["ok", None]),
    ("bigint", [2**64]),  # wider than 64 bits: psycopg's own (PostgreSQL refuses it)
]


@pytest.mark.parametrize(("pg_type", "values"), COLUMNS)
def test_an_array_parameter_reads_back_as_its_values(pg_type: str, values: list[Any]) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        try:
            row = conn.execute(f"SELECT %s::{pg_type}[]", [pg_array(values)]).fetchone()
        except psycopg.errors.NumericValueOutOfRange:
            assert values == [2**64]
            return
    assert row is not None
    got = row[0]
    if pg_type == "float8":
        assert [repr(v) for v in got] == [repr(None if v is None else float(v)) for v in values]
        assert got[-1] is not None
    else:
        assert got == values


def test_plain_columns_are_written_in_c_calls() -> None:
    assert pg_array([1, 2]) == "{1,2}"
    assert pg_array([b"ab", None]) == '{"\\\\x6162",NULL}'
    assert pg_array(["succeeded", "failed"]) == "{succeeded,failed}"
    assert pg_array(["null"]) == ["null"]  # unquoted, it would be NULL
    assert isinstance(pg_array([math.nan]), list)  # orjson would write it as null
    assert pg_array([True, False]) == [True, False]  # booleans are no numbers here
