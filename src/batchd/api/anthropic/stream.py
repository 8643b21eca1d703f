"""A JSON object body read as it arrives, one member's array handed on element by element
(``{"requests": [...]}``): whatever its size, about one element is held at a time.

Where an element ends is found by the standard library's C scanner
(``json.JSONDecoder.raw_decode``); the element's text is then parsed under the JSON policy
(:mod:`batchd.domain.jsonpolicy`), so it is refused exactly as a whole body would be, named
by its place (``requests.3``) and byte offset. The other members are parsed and dropped.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from batchd.domain import errors, jsonpolicy

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER_GOES_ON = re.compile(r"[0-9.eE+-]*")  # what may follow a number cut short
_SCANNER = json.JSONDecoder()
# A parse error this close to the end of what has arrived may only be a value cut short.
_NEAR_END = 8


class _Text:
    """The body decoded as it arrives, with a read position."""

    def __init__(self, chunks: AsyncIterator[bytes], *, max_bytes: int) -> None:
        self.chunks = chunks
        self.max_bytes = max_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.pos = 0
        self.before = 0  # bytes of the body before text[0]
        self.received = 0
        self.ended = False

    def offset(self, pos: int) -> int:
        """The byte offset in the body of ``text[pos]``."""
        return self.before + len(self.text[:pos].encode("utf-8", "surrogatepass"))

    async def more(self) -> bool:
        """Append the next chunk (dropping what was read); False once the body has ended."""
        if self.ended:
            return False
        try:
            chunk = await anext(self.chunks)
        except StopAsyncIteration:
            self.ended = True
            chunk = b""
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise errors.LimitExceeded(
                f"request body is larger than the limit of {self.max_bytes} bytes",
                details={"limit": self.max_bytes})
        try:
            fresh = self.decoder.decode(chunk, final=self.ended)
        except UnicodeDecodeError as exc:
            at = self.received - len(chunk) + exc.start
            raise jsonpolicy.violation("not valid UTF-8", offset=max(at, 0)) from None
        self.before = self.offset(self.pos)
        self.text = self.text[self.pos:] + fresh
        self.pos = 0
        return True

    async def peek(self) -> str | None:
        """The next character that is not white space (None at the end), not consumed."""
        while True:
            self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not await self.more():
                return None

    async def expect(self, chars: str, *, where: str, wanted: str) -> str:
        found = await self.peek()
        if found is None or found not in chars:
            got = "the end of the body" if found is None else repr(found)
            raise jsonpolicy.violation(f"expected {wanted}, found {got}",
                                       offset=self.offset(self.pos), where=where)
        self.pos += 1
        return found

    async def value(self, *, where: str, max_bytes: int) -> Any:
        """The next JSON value, parsed under the policy."""
        await self.peek()
        retry_at = 0  # retried once this much has arrived: linear however it is cut
        while True:
            start = self.pos
            if len(self.text) - start >= retry_at or self.ended:
                try:
                    _, end = _SCANNER.raw_decode(self.text, start)
                except json.JSONDecodeError as exc:
                    if self.ended or not (exc.msg.startswith("Unterminated string")
                                          or len(self.text) - exc.pos <= _NEAR_END):
                        raise jsonpolicy.violation(exc.msg.removesuffix(" at"),
                                                   offset=self.offset(exc.pos),
                                                   where=where) from None
                    retry_at = 2 * (len(self.text) - start)
                except RecursionError:
                    raise jsonpolicy.violation(
                        f"nests deeper than the limit of {jsonpolicy.MAX_DEPTH} levels",
                        offset=self.offset(start), where=where) from None
                else:
                    if self.ended or not _NUMBER_GOES_ON.fullmatch(self.text, end):
                        self.pos = end
                        return self._policy(start, end, where=where)
            if len(self.text) - start > max_bytes:
                raise errors.InvalidInput(f"{where}: larger than the limit of {max_bytes} "
                                          "bytes", details={"limit": max_bytes})
            await self.more()


    def _policy(self, start: int, end: int, *, where: str) -> Any:
        try:
            return jsonpolicy.loads(self.text[start:end], where=where)
        except errors.InvalidInput as exc:
            at = exc.details.get("offset")
            if at is None:
                raise
            problem = exc.details["problem"].removesuffix(f" at byte {at}")
            raise jsonpolicy.violation(problem, path=exc.details["path"],
                                       offset=self.offset(start) + at, where=where) from None


async def array_member(chunks: AsyncIterator[bytes], *, key: str, max_body_bytes: int,
                       max_element_bytes: int) -> AsyncIterator[Any]:
    """The elements of the array at ``key`` of the JSON object in ``chunks``, as each is
    complete; raises InvalidInput naming the place of what is wrong (also after the
    array: the body is read to its end), LimitExceeded past ``max_body_bytes``."""
    body = _Text(chunks, max_bytes=max_body_bytes)
    await body.expect("{", where="", wanted="a JSON object")
    seen_key = False
    if await body.peek() == "}":
        body.pos += 1
    else:
        while True:
            if await body.peek() != '"':
                raise jsonpolicy.violation("expected a member name in double quotes",
                                           offset=body.offset(body.pos))
            name = await body.value(where="", max_bytes=max_element_bytes)
            await body.expect(":", where=name, wanted="':'")
            if name == key and not seen_key:
                seen_key = True
                async for element in _elements(body, key=key, max_bytes=max_element_bytes):
                    yield element
            else:
                await body.value(where=name, max_bytes=max_element_bytes)
            if await body.expect(",}", where=name, wanted="',' or '}'") == "}":
                break
    if await body.peek() is not None:
        raise jsonpolicy.violation("extra data after the JSON object",
                                   offset=body.offset(body.pos))


async def _elements(body: _Text, *, key: str, max_bytes: int) -> AsyncIterator[Any]:
    await body.expect("[", where=key, wanted="a list")
    if await body.peek() == "]":
        body.pos += 1
        return
    i = 0
    while True:
        yield await body.value(where=f"{key}.{i}", max_bytes=max_bytes)
        if await body.expect(",]", where=f"{key}.{i}", wanted="',' or ']'") == "]":
            return
        i += 1
