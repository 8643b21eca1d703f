"""Streaming parsers turning request bodies into records, in constant memory."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from batchd.domain import errors, jsonpolicy


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
        block, buf = buf[:cut], buf[cut + 1 :]
        # One scan of the whole block: only then does each line need the exact check.
        careful = jsonpolicy.may_hold_wide_ints(block)
        records, line_no = _parse_lines(block.split(b"\n"), line_no, careful=careful)
        if records:
            yield records
    if buf.strip():
        records, line_no = _parse_lines([buf], line_no, careful=True)
        yield records


def _strict(line: bytes, line_no: int) -> Any:
    try:
        return jsonpolicy.loads(line, where=f"line {line_no}")
    except errors.InvalidInput as exc:
        exc.details["at"] = line_no - 1
        exc.details["problem"] = exc.message  # names the line too, as before
        raise


def _parse_lines(
    lines: list[bytes], line_no: int, *, careful: bool
) -> tuple[list[Any], int]:
    """The records of ``lines`` under the JSON policy (``careful``: they may hold a wide
    integer). orjson alone refuses what the policy refuses (NaN, overflowing floats, lone
    surrogates, invalid UTF-8) except wide integers and deep nesting, so the lines are
    parsed by orjson in one pass when no line is blank or may nest too deep; only the lines
    that may hold a wide integer are then checked the policy's slower way. Otherwise, or
    when orjson refuses a line, they go line by line (the policy names what and where)."""
    if b"" not in lines and not jsonpolicy.any_may_be_too_deep(lines):
        try:
            records = list(map(orjson.loads, lines))
        except orjson.JSONDecodeError:
            pass  # a blank line of spaces, or a bad one: found and named line by line
        else:
            if careful:
                for at, line in enumerate(lines, start=line_no + 1):
                    if jsonpolicy.may_hold_wide_ints(line):
                        _strict(line, at)
            return records, line_no + len(lines)
    return _parse_each(lines, line_no, careful=careful)


def _parse_each(lines: list[bytes], line_no: int, *, careful: bool) -> tuple[list[Any], int]:
    records = []
    fast = orjson.loads
    shortest_deep = jsonpolicy.SHORTEST_TOO_DEEP
    for line in lines:
        line_no += 1
        if not line.strip():
            continue
        if careful or (len(line) >= shortest_deep and jsonpolicy.may_be_too_deep(line)):
            records.append(_strict(line, line_no))
            continue
        try:
            records.append(fast(line))
        except orjson.JSONDecodeError:
            records.append(_strict(line, line_no))  # raises, naming what and where
    return records, line_no


_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)?(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _convert(value: str) -> Any:
    """A CSV cell as JSON: plain decimal numbers become numbers; ``0150`` stays text.

    Numbers JSON cannot hold exactly (beyond 64-bit integers, overflowing floats) are
    refused by the JSON policy, like the same numbers in a JSON body."""
    if value == "":
        return None
    if _INT.fullmatch(value):
        return jsonpolicy.int_value(value)
    if any(ch.isdigit() for ch in value) and _FLOAT.fullmatch(value):
        return jsonpolicy.float_value(value)
    return value


def _unflatten(header: list[str], row: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in zip(header, row, strict=False):
        try:
            value = _convert(raw)
        except ValueError as exc:
            raise jsonpolicy.violation(str(exc), path=[*key.split(".")]) from None
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
    offset = 0
    async for chunk in chunks:
        try:
            pending += decoder.decode(text_decoder.decode(chunk))
        except UnicodeDecodeError as exc:
            raise _utf8_error(row_no, offset + exc.start) from None
        offset += len(chunk)
        complete, pending = _split_complete(pending)
        if not complete:
            if len(pending) > max_record_bytes:
                raise _body_error(row_no, f"row {row_no + 1} is too long")
            continue
        header, records, row_no = _parse_csv(complete, header, row_no)
        if records:
            yield records
    try:
        pending += decoder.decode(text_decoder.decode(b"", final=True), final=True)
    except UnicodeDecodeError:
        raise _utf8_error(row_no, offset) from None
    if pending.strip():
        header, records, row_no = _parse_csv(pending, header, row_no)
        if records:
            yield records
    if header is None:
        raise _body_error(None, "the CSV body has no header row")


def _utf8_error(row_no: int, offset: int) -> errors.InvalidInput:
    exc = jsonpolicy.violation("not valid UTF-8", offset=offset, where=f"row {row_no + 1}")
    exc.details["at"] = row_no
    exc.details["problem"] = exc.message
    return exc


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
                deep = [h for h in header if h.count(".") >= jsonpolicy.MAX_DEPTH]
                if deep:
                    raise _body_error(0, f"the CSV header {deep[0][:60]!r} nests deeper than "
                                         f"the limit of {jsonpolicy.MAX_DEPTH} levels")
                continue
            row_no += 1
            if len(row) > len(header):
                raise _body_error(
                    row_no,
                    f"row {row_no} has {len(row)} cells but the header has {len(header)}",
                )
            try:
                records.append(_unflatten(header, row))
            except errors.InvalidInput as exc:
                exc.details["at"] = row_no
                exc.message = exc.details["problem"] = f"row {row_no}, {exc.message}"
                exc.args = (exc.message,)
                raise
    except csv.Error as exc:
        raise _body_error(row_no, f"row {row_no + 1}: {exc}") from None
    return header, records, row_no


async def json_array_records(
    records: list[Any], *, batch: int = 10_000
) -> AsyncIterator[list[Any]]:
    for start in range(0, len(records), batch):
        yield records[start : start + batch]
