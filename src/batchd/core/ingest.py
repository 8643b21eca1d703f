"""Streaming parsers turning request bodies into records, in constant memory."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from batchd.domain import errors


def _body_error(at: int | None, message: str, kind: str = "value_error") -> errors.InvalidInput:
    """A body that cannot be read; ``at`` is the line or row (from 0; the header row of
    a CSV body is 0), None for the body as a whole."""
    details: dict[str, Any] = {"problem": message, "kind": kind}
    if at is not None:
        details["at"] = at
    return errors.InvalidInput(message, details=details)


async def ndjson_records(
    chunks: AsyncIterator[bytes], *, max_record_bytes: int
) -> AsyncIterator[list[Any]]:
    """Yield records from newline-delimited JSON as they arrive; blank lines are skipped."""
    buf = b""
    line_no = 0
    async for chunk in chunks:
        buf += chunk
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > max_record_bytes:
                raise _body_error(line_no, f"line {line_no + 1} is too long")
            continue
        lines, buf = buf[:cut].split(b"\n"), buf[cut + 1 :]
        records, line_no = _parse_lines(lines, line_no)
        if records:
            yield records
    if buf.strip():
        records, line_no = _parse_lines([buf], line_no)
        yield records


def _parse_lines(lines: list[bytes], line_no: int) -> tuple[list[Any], int]:
    records = []
    loads = orjson.loads
    for line in lines:
        line_no += 1
        if not line.strip():
            continue
        try:
            records.append(loads(line))
        except orjson.JSONDecodeError as exc:
            raise _body_error(
                line_no - 1, f"line {line_no} is not valid JSON: {exc}", "json_invalid"
            ) from None
    return records, line_no


_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)?(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _convert(value: str) -> Any:
    """A CSV cell as JSON: plain decimal numbers become numbers; ``0150`` stays text."""
    if value == "":
        return None
    if _INT.fullmatch(value):
        return int(value)
    if any(ch.isdigit() for ch in value) and _FLOAT.fullmatch(value):
        return float(value)
    return value


def _unflatten(header: list[str], row: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in zip(header, row, strict=False):
        value = _convert(raw)
        if "." not in key:
            out[key] = value
            continue
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[leaf] = value
    return out


async def csv_records(
    chunks: AsyncIterator[bytes], *, max_record_bytes: int
) -> AsyncIterator[list[Any]]:
    """Yield records from CSV with a header row.

    Numbers become numbers, empty cells null, and ``a.b`` headers nested objects
    (the inverse of the CSV export).
    """
    header: list[str] | None = None
    pending = ""
    row_no = 0
    decoder = io.IncrementalNewlineDecoder(None, translate=False)
    text_decoder = codecs.getincrementaldecoder("utf-8-sig")()
    async for chunk in chunks:
        pending += decoder.decode(text_decoder.decode(chunk))
        complete, pending = _split_complete(pending)
        if not complete:
            if len(pending) > max_record_bytes:
                raise _body_error(row_no, f"row {row_no + 1} is too long")
            continue
        header, records, row_no = _parse_csv(complete, header, row_no)
        if records:
            yield records
    pending += decoder.decode(text_decoder.decode(b"", final=True), final=True)
    if pending.strip():
        header, records, row_no = _parse_csv(pending, header, row_no)
        if records:
            yield records
    if header is None:
        raise _body_error(None, "the CSV body has no header row")


def _split_complete(text: str) -> tuple[str, str]:
    """Cut ``text`` after its last newline that is outside quotes."""
    cut = -1
    in_quotes = False
    start = 0
    while True:
        nl = text.find("\n", start)
        if nl < 0:
            break
        if text.count('"', start, nl) % 2:
            in_quotes = not in_quotes
        if not in_quotes:
            cut = nl
        start = nl + 1
    if cut < 0:
        return "", text
    return text[: cut + 1], text[cut + 1 :]


def _parse_csv(
    text: str, header: list[str] | None, row_no: int
) -> tuple[list[str] | None, list[Any], int]:
    records = []
    try:
        for row in csv.reader(io.StringIO(text)):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [h.strip() for h in row]
                if len(set(header)) != len(header) or not all(header):
                    raise _body_error(0, "the CSV header has empty or repeated names")
                continue
            row_no += 1
            if len(row) > len(header):
                raise _body_error(
                    row_no,
                    f"row {row_no} has {len(row)} cells but the header has {len(header)}",
                )
            records.append(_unflatten(header, row))
    except csv.Error as exc:
        raise _body_error(row_no, f"row {row_no + 1}: {exc}") from None
    return header, records, row_no


async def json_array_records(
    records: list[Any], *, batch: int = 10_000
) -> AsyncIterator[list[Any]]:
    for start in range(0, len(records), batch):
        yield records[start : start + batch]
