"""What `submit` accepts as files, read lazily, and cut into chunks (one batch each).

`submit` takes a list, any iterable or generator, or a single directory: nothing here ever holds
the whole input, so a generator of a million paths costs memory for one chunk at a time.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import NamedTuple, TypeVar

from filebatch_sdk.errors import InvalidFileError
from filebatch_sdk.models import FileSpec

T = TypeVar("T")

# One file as `submit` accepts it: a local path, or a `FileSpec` declared by the caller.
FileInput = FileSpec | str | os.PathLike[str]
# What `submit(files)` accepts: one path (a directory is walked) or spec, or an iterable of them.
FilesArgument = FileInput | Iterable[FileInput]


class InputFile(NamedTuple):
    """One file to submit: `path` is the local file (None for a `FileSpec` given on its own), and
    `source` what to declare it from: that path, or the caller's `FileSpec`."""

    path: Path | None
    source: FileSpec | Path


def iter_file_inputs(files: FilesArgument) -> Iterator[InputFile]:
    """Every file of `files`, in order, lazily (an item is pulled only when the next file is asked for).

    A directory, given alone or inside the iterable, is walked recursively (see `walk_directory`);
    other paths are yielded as they are, even if missing: `FileSpec.from_path` then names the
    file that cannot be read. A path given explicitly is never skipped, hidden or not.
    """
    items: Iterable[FileInput] = [files] if isinstance(files, str | os.PathLike | FileSpec) else files
    for item in items:
        if isinstance(item, FileSpec):
            yield InputFile(None, item)
            continue
        path = Path(item)
        if path.is_dir():
            for found in walk_directory(path):
                yield InputFile(found, found)
        else:
            yield InputFile(path, path)


def walk_directory(directory: Path) -> Iterator[Path]:
    """The regular files under `directory`, recursively, in a stable order, lazily.

    Names are sorted within each directory, and a directory's files and subdirectories come in that
    one order (depth first). Names starting with "." (hidden files and directories) are skipped.
    Symbolic links to files are followed; links to directories are not, so a link loop cannot
    make the walk endless. Only one directory listing per level is held at a time.
    """
    try:
        with os.scandir(directory) as scan:
            entries = sorted((entry for entry in scan if not entry.name.startswith(".")), key=_name)
    except OSError as error:
        raise InvalidFileError(f"{directory}: cannot list directory ({error.strerror or error})") from error
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from walk_directory(Path(entry.path))
        elif entry.is_file(follow_symlinks=True):
            yield Path(entry.path)


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


if sys.version_info >= (3, 12):
    from itertools import batched

    def _batches(iterable: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
        return batched(iterable, size)

else:

    def _batches(iterable: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
        iterator = iter(iterable)
        while batch := tuple(islice(iterator, size)):
            yield batch


def chunked(iterable: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` consecutive items of `iterable` (the last one may be shorter), lazily: a
    chunk's items are pulled from `iterable` only when that chunk is asked for."""
    if size < 1:
        raise ValueError("size must be at least 1")
    for batch in _batches(iterable, size):
        yield list(batch)
