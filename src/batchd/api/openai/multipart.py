"""A ``multipart/form-data`` upload read as it arrives: the small fields kept, the
``file`` part handed on piece by piece (never whole in memory, never spooled to disk)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from batchd.domain import errors

MAX_FIELD_BYTES = 4096


@dataclass
class Form:
    """What the upload held besides the file's bytes (known once they are all read)."""

    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    has_file: bool = False


class _State:
    def __init__(self, form: Form) -> None:
        self.form = form
        self.headers: dict[bytes, bytes] = {}
        self.header_field = b""
        self.header_value = b""
        self.name: str | None = None
        self.is_file = False
        self.value = bytearray()
        self.out: list[bytes] = []

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode(errors="replace")
        filename = params.get(b"filename")
        self.name = name
        self.is_file = name == "file" and filename is not None
        if self.is_file:
            self.form.has_file = True
            self.form.filename = (filename or b"").decode(errors="replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.is_file:
            self.out.append(data[start:end])
            return
        self.value += data[start:end]
        if len(self.value) > MAX_FIELD_BYTES:
            raise errors.InvalidInput(f"the form field {self.name!r} is too long",
                                      details={"param": self.name})

    def on_part_end(self) -> None:
        if not self.is_file and self.name:
            self.form.fields[self.name] = self.value.decode(errors="replace")
        self.headers, self.value, self.is_file, self.name = {}, bytearray(), False, None


def boundary_of(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise errors.InvalidInput("The request must be multipart/form-data with 'file' and "
                                  "'purpose'.", details={"param": "file"})
    return boundary


async def file_bytes(body: AsyncIterator[bytes], boundary: bytes, form: Form
                     ) -> AsyncIterator[bytes]:
    """The ``file`` part's bytes as they arrive; ``form`` fills in as the parts go by."""
    state = _State(form)
    parser = MultipartParser(boundary, callbacks={
        "on_header_field": state.on_header_field, "on_header_value": state.on_header_value,
        "on_header_end": state.on_header_end, "on_headers_finished": state.on_headers_finished,
        "on_part_data": state.on_part_data, "on_part_end": state.on_part_end,
    })
    async for chunk in body:
        try:
            parser.write(chunk)
        except errors.BatchdError:
            raise
        except Exception as exc:
            raise errors.InvalidInput(f"the multipart body cannot be read: {exc}",
                                      details={"param": "file"}) from None
        if state.out:
            pieces, state.out = state.out, []
            yield b"".join(pieces)
    parser.finalize()
