"""The I/O-free pieces of the SDK's chunked `submit`: its inputs, its state file, the thread of
its callbacks, and the run object it returns."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from filebatch_sdk import (
    FileSpec,
)
from filebatch_sdk._inputs import InputFile, chunked, iter_file_inputs, walk_directory

# Generous: only reached when the code under test is broken (an event that never comes).
WAIT = 10.0


# ---- inputs ---------------------------------------------------------------------------------------


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _pulled_then_raise(items: list[Any], pulled: list[Any]) -> Iterator[Any]:
    """Yields `items`, recording each one pulled, then fails: pulling past them is a bug."""
    for item in items:
        pulled.append(item)
        yield item
    raise AssertionError("pulled more items than were needed")


def test_paths_and_specs_are_yielded_in_order_with_their_path() -> None:
    # Given paths of every accepted kind (missing ones too: reading them is FileSpec's job) and a spec
    spec = FileSpec(filename="b.bin", size=3, content_type="application/octet-stream")
    # When they are read
    items = list(iter_file_inputs(["a.jpg", Path("c.pdf"), spec]))
    # Then each comes out in order: a path with itself, a spec with no path
    assert items == [
        InputFile(Path("a.jpg"), Path("a.jpg")),
        InputFile(Path("c.pdf"), Path("c.pdf")),
        InputFile(None, spec),
    ]


def test_a_directory_is_walked_sorted_recursively_skipping_hidden_and_linked_directories(
    tmp_path: Path,
) -> None:
    # Given a tree with nested directories, hidden entries, a link to a file and a link loop
    root = tmp_path / "photos"
    _touch(root / "b.jpg")
    _touch(root / "a" / "z.jpg")
    _touch(root / "a" / "deeper" / "y.jpg")
    _touch(root / "c.jpg")
    _touch(root / ".hidden.jpg")
    _touch(root / ".cache" / "x.jpg")
    _touch(tmp_path / "outside.jpg")
    (root / "linked.jpg").symlink_to(tmp_path / "outside.jpg")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    (root / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    # When the directory alone is given
    items = list(iter_file_inputs(str(root)))
    # Then its regular files come depth first, names sorted in each directory, hidden ones and
    # linked directories left out, linked files kept
    expected = [root / "a" / "deeper" / "y.jpg", root / "a" / "z.jpg", root / "b.jpg", root / "c.jpg"]
    expected.append(root / "linked.jpg")
    assert items == [InputFile(path, path) for path in expected]


def test_a_directory_inside_a_list_is_walked_in_its_place(tmp_path: Path) -> None:
    # Given a list with a file, a directory, then another file
    first = _touch(tmp_path / "first.txt")
    folder = tmp_path / "folder"
    _touch(folder / "2.txt")
    _touch(folder / "1.txt")
    last = _touch(tmp_path / "last.txt")
    # When it is read
    paths = [item.path for item in iter_file_inputs([first, folder, last])]
    # Then the directory's files come where the directory was
    assert paths == [first, folder / "1.txt", folder / "2.txt", last]


def test_a_hidden_directory_given_explicitly_is_walked(tmp_path: Path) -> None:
    # Given a hidden directory named by the caller
    hidden = tmp_path / ".backup"
    _touch(hidden / "a.txt")
    # When it is read, then its files are there: only names found by the walk are skipped
    assert [item.path for item in iter_file_inputs(hidden)] == [hidden / "a.txt"]


def test_a_walk_lists_a_directory_only_when_the_walk_reaches_it(tmp_path: Path) -> None:
    # Given two directories
    _touch(tmp_path / "a" / "1.txt")
    _touch(tmp_path / "b" / "1.txt")
    walk = walk_directory(tmp_path)
    # When the first file is taken, and a file then appears in "b"
    assert next(walk) == tmp_path / "a" / "1.txt"
    _touch(tmp_path / "b" / "0.txt")
    # Then the walk, which had not listed "b" yet, finds it
    assert list(walk) == [tmp_path / "b" / "0.txt", tmp_path / "b" / "1.txt"]


def test_inputs_pull_only_the_items_asked_for() -> None:
    # Given a generator that fails if pulled past its third item
    pulled: list[Any] = []
    inputs = iter_file_inputs(_pulled_then_raise(["1.txt", "2.txt", "3.txt"], pulled))
    # When two files are taken
    taken = list(islice(inputs, 2))
    # Then exactly two items were pulled
    assert [item.path for item in taken] == [Path("1.txt"), Path("2.txt")]
    assert pulled == ["1.txt", "2.txt"]


def test_chunks_are_cut_lazily() -> None:
    # Given a generator that fails if pulled past its fourth item
    pulled: list[Any] = []
    chunks = chunked(iter_file_inputs(_pulled_then_raise(["1", "2", "3", "4"], pulled)), 2)
    # When the first chunk is taken, then only its items were pulled
    assert [item.path for item in next(chunks)] == [Path("1"), Path("2")]
    assert pulled == ["1", "2"]
    # And the second chunk pulls the next two
    assert [item.path for item in next(chunks)] == [Path("3"), Path("4")]
    assert pulled == ["1", "2", "3", "4"]


def test_chunks_have_the_size_asked_for_and_the_last_has_the_rest() -> None:
    assert list(chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunked(range(4), 2)) == [[0, 1], [2, 3]]
    assert list(chunked([], 3)) == []


def test_a_chunk_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(chunked(range(3), 0))
