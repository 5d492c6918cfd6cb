"""Multipart uploads streamed straight into files of their own, never held whole in memory.

``read_form`` feeds the request body, chunk by chunk as it arrives, to python-multipart's
streaming parser: each file part is written to a new file under the request's folder as it is
parsed (named as the client named it, so decoders, messages and saliency titles see that
name), and text fields are kept up to a small size. The total size is bounded by
``uploads.BodyLimit`` before and while the body is read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Dict, List, Optional
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from mmvgm.errors import InputError
from mmvgm.serve.uploads import display_name

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 10_000
MAX_URLENCODED_BYTES = 1 << 20
WRITE_BYTES = 1 << 20  # body bytes gathered before one parse-and-write off the event loop


class MalformedForm(InputError):
    """The body is not the multipart form the endpoint takes (answered 400)."""


class ClientGone(Exception):
    """The client went away before its body arrived: nothing to answer, nothing to log."""


@dataclass
class UploadedFile:
    field: str
    name: str       # the client's file name, made safe: what records and messages call it
    path: Path      # where its bytes are


@dataclass
class StreamedForm:
    """A parsed form: file parts by field name (already on disk) and text fields."""

    files: Dict[str, List[UploadedFile]] = field(default_factory=dict)
    fields: Dict[str, List[str]] = field(default_factory=dict)

    def file(self, name: str, what: str, required: bool = True) -> Optional[UploadedFile]:
        """The one file of field ``name``; a missing required one is an InputError."""
        found = self.files.get(name) or []
        if len(found) > 1:
            raise InputError(f"send one '{name}' file, not {len(found)}")
        if not found and required:
            raise InputError(f"the form needs a '{name}' file ({what})")
        return found[0] if found else None

    def value(self, name: str) -> Optional[str]:
        """The text of field ``name`` (the last one sent), or None."""
        values = self.fields.get(name)
        return values[-1] if values else None


class _Parts:
    """python-multipart's callbacks: headers per part, then its bytes to a file or a field."""

    def __init__(self, folder: Path, form: StreamedForm) -> None:
        self.folder, self.form = folder, form
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: Dict[bytes, bytes] = {}
        self.name = ""
        self.out: Optional[IO[bytes]] = None
        self.text: Optional[bytearray] = None
        self.count = 0
        self.complete = False  # the closing boundary was seen

    def callbacks(self) -> dict:
        return {"on_part_begin": self.begin, "on_header_field": self.on_field, "on_header_value": self.on_value,
                "on_header_end": self.header_end, "on_headers_finished": self.headers_done,
                "on_part_data": self.data, "on_part_end": self.end, "on_end": self.finished}

    def begin(self) -> None:
        self.count += 1
        if self.count > MAX_PARTS:
            raise InputError(f"a form may hold at most {MAX_PARTS} parts")
        self.headers = {}

    def on_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def headers_done(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise MalformedForm("a form part has no name (Content-Disposition: form-data; name=...)")
        self.name = options[b"name"].decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            self.text = bytearray()
            return
        if not filename:  # an HTML form's empty file input: no file at all
            return
        # Both names are the client's: the field's too must not reach a path unchanged.
        fallback = display_name(self.name, default="upload")
        path = _free_path(self.folder, display_name(filename.decode("utf-8", "replace"), default=fallback))
        self.out = open(path, "xb")
        self.form.files.setdefault(self.name, []).append(UploadedFile(self.name, path.name, path))

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.out is not None:
            self.out.write(data[start:end])
        elif self.text is not None:
            self.text += data[start:end]
            if len(self.text) > MAX_FIELD_BYTES:
                raise InputError(f"form field '{self.name}' is over {MAX_FIELD_BYTES // 1024} KB")

    def end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        elif self.text is not None:
            try:
                value = self.text.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"form field '{self.name}' is not UTF-8 text") from None
            self.form.fields.setdefault(self.name, []).append(value)
            self.text = None

    def finished(self) -> None:
        self.complete = True

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


def _free_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/N-name`` when a part of this form already took the name."""
    path, n = folder / name, 1
    while path.exists():
        path, n = folder / f"{n}-{name}", n + 1
    if path.parent != folder:  # display_name never gives a separator; this keeps it so
        raise InputError(f"unusable upload name {name!r}")
    return path


async def read_form(request: Request, folder: Path) -> StreamedForm:
    """Parse the request's multipart body into ``folder`` as it arrives (see the module)."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"application/x-www-form-urlencoded":  # text fields only (curl -d path=...)
        return await _read_urlencoded(request)
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise MalformedForm("send the request as multipart/form-data (curl -F file=@clip.mp4 ...)"
                            + ("" if content_type else ": it has no Content-Type"))
    folder.mkdir(parents=True, exist_ok=True)
    form = StreamedForm()
    parts = _Parts(folder, form)
    parser = MultipartParser(options[b"boundary"], parts.callbacks())
    pending = bytearray()
    try:
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= WRITE_BYTES:
                await run_in_threadpool(parser.write, bytes(pending))
                pending.clear()
        await run_in_threadpool(_finish, parser, bytes(pending))
        if not parts.complete:
            raise MalformedForm("the body ended before the form's closing boundary")
    except MultipartParseError as exc:
        raise MalformedForm(f"malformed multipart body ({exc})") from None
    except ClientDisconnect:
        raise ClientGone() from None
    finally:
        parts.close()
    return form


async def _read_urlencoded(request: Request) -> StreamedForm:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_URLENCODED_BYTES:
            raise InputError(f"a url-encoded form may hold at most {MAX_URLENCODED_BYTES // 1024} KB; "
                             "send files as multipart/form-data")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_PARTS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedForm(f"malformed url-encoded form ({exc})") from None
    form = StreamedForm()
    for name, value in pairs:
        form.fields.setdefault(name, []).append(value)
    return form


def _finish(parser: MultipartParser, tail: bytes) -> None:
    if tail:
        parser.write(tail)
    parser.finalize()
