"""How a description provider reads the file it describes: as much of it as it needs, never more.

The bytes come from object storage (a pinned object version). A provider that only needs the first
words of a text reads a chunk or two; one that decodes an image gets a seekable local file. Nothing
here holds a whole file in memory.
"""

from __future__ import annotations

import io
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import BinaryIO, Protocol


class MediaSource(Protocol):
    @property
    def size(self) -> int: ...

    def chunks(self) -> Generator[bytes, None, None]:
        """The bytes in order; stopping early (closing the generator) stops the download."""
        ...

    def open(self) -> AbstractContextManager[BinaryIO]:
        """The whole file as a seekable local file (on disk, not in memory), for parsers that seek."""
        ...


class BytesMedia:
    """A MediaSource over bytes already in memory (small inputs and tests)."""

    def __init__(self, content: bytes, chunk_size: int = 1024 * 1024) -> None:
        self._content = content
        self._chunk_size = chunk_size

    @property
    def size(self) -> int:
        return len(self._content)

    def chunks(self) -> Generator[bytes, None, None]:
        for start in range(0, len(self._content), self._chunk_size):
            yield self._content[start : start + self._chunk_size]

    def open(self) -> AbstractContextManager[BinaryIO]:
        return nullcontext(io.BytesIO(self._content))


class LocalFileMedia:
    """A MediaSource over a seekable local file that already holds the bytes (a spool): several
    readers share one download."""

    def __init__(self, file: BinaryIO, size: int, chunk_size: int = 1024 * 1024) -> None:
        self._file = file
        self._size = size
        self._chunk_size = chunk_size

    @property
    def size(self) -> int:
        return self._size

    def chunks(self) -> Generator[bytes, None, None]:
        self._file.seek(0)
        while chunk := self._file.read(self._chunk_size):
            yield chunk

    def open(self) -> AbstractContextManager[BinaryIO]:
        # The caller's `with` must not close the shared file.
        self._file.seek(0)
        return nullcontext(self._file)


@contextmanager
def spooled(chunks: Iterator[bytes]) -> Iterator[BinaryIO]:
    """Write `chunks` to a temporary local file and yield it, rewound; deleted afterwards."""
    import tempfile

    with tempfile.TemporaryFile() as file:
        for chunk in chunks:
            file.write(chunk)
        file.seek(0)
        yield file
