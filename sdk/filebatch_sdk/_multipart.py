"""A multipart/form-data body that streams its file: what a browser sends for a presigned POST
upload (the form's fields, then the file), without holding the file in memory.

requests can stream a body (any object with `read`) and sets Content-Length from its `len`, which
S3's POST needs (it refuses chunked transfer encoding); its own `files=` encoder builds the whole
body in memory, and requests-toolbelt's streaming encoder is another dependency. This is the one
place the SDK builds such a body."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO


def _quoted(value: str) -> str:
    # Form-data parameter values are quoted strings: a quote or line break would end them early.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartFormFile:
    """`fields` (in order) then the file at `path` as the part `file_field`, as one readable body.

    Open it with `with`, pass it as `data=` with `content_type` as the Content-Type header, and
    requests sends it in blocks of its choosing with Content-Length `len(body)`. Reading goes
    through the file once, in the reader's block size: memory stays at a block.
    """

    def __init__(
        self,
        fields: Mapping[str, str],
        path: Path,
        *,
        filename: str,
        file_content_type: str,
        file_field: str = "file",
    ) -> None:
        self.boundary = f"filebatch-{secrets.token_hex(16)}"
        head = b"".join(self._part_header(name) + value.encode() + b"\r\n" for name, value in fields.items())
        head += self._part_header(file_field, filename=filename, content_type=file_content_type)
        self._head = head
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._path = path
        self._file_size = path.stat().st_size
        self._file: BinaryIO | None = None
        # Where the reader is: in the head, the file, or the tail (offset into the whole body).
        self._position = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _part_header(
        self, name: str, *, filename: str | None = None, content_type: str | None = None
    ) -> bytes:
        disposition = f'Content-Disposition: form-data; name="{_quoted(name)}"'
        if filename is not None:
            disposition += f'; filename="{_quoted(filename)}"'
        lines = [f"--{self.boundary}", disposition]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def __len__(self) -> int:
        return len(self._head) + self._file_size + len(self._tail)

    def __enter__(self) -> MultipartFormFile:
        # From the first byte each time: a retried upload sends the whole body again.
        self._file = self._path.open("rb")
        self._position = 0
        return self

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self, size: int = -1) -> bytes:
        if self._file is None:
            raise ValueError("open the body with `with` before reading it")
        if size is None or size < 0:
            size = len(self) - self._position
        out = bytearray()
        while len(out) < size and self._position < len(self):
            wanted = size - len(out)
            file_start = len(self._head)
            file_end = file_start + self._file_size
            if self._position < file_start:
                chunk = self._head[self._position : self._position + wanted]
            elif self._position < file_end:
                chunk = self._file.read(min(wanted, file_end - self._position))
                if not chunk:
                    raise OSError(f"{self._path} became shorter while it was being uploaded")
            else:
                start = self._position - file_end
                chunk = self._tail[start : start + wanted]
            out += chunk
            self._position += len(chunk)
        return bytes(out)
