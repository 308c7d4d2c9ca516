"""The I/O-free pieces of the SDK's chunked `submit`: its inputs, its state file, the thread of
its callbacks, and the run object it returns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from filebatch_sdk import (
    BatchCounts,
    BatchRun,
    BatchStatus,
    CreatedBatch,
    CreatedFile,
    FilebatchError,
    FileError,
    FileResult,
    FileSpec,
    RunFailedError,
    SubmitRun,
    UploadProgress,
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


# ---- the run object -------------------------------------------------------------------------------

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _result(
    file_id: str, filename: str, status: str = "completed", error: FileError | None = None
) -> FileResult:
    return FileResult(
        file_id=file_id,
        filename=filename,
        status=status,
        declared_size=1,
        declared_content_type="image/jpeg",
        size_bytes=1,
        sha256=None,
        detected_content_type="image/jpeg",
        description=None,
        error=error,
        uploaded_at=NOW,
        finished_at=NOW,
    )


def _batch_run(
    batch_id: str, names: list[str], results: list[FileResult], status: str = "completed"
) -> BatchRun:
    files = [
        CreatedFile(f"f{index:05d}", name, 1, "image/jpeg", upload=None) for index, name in enumerate(names)
    ]
    run = BatchRun(
        batch=CreatedBatch(batch_id=batch_id, status="awaiting_upload", created_at=NOW, files=files),
        paths=[Path("in") / name for name in names],
        results=results,
    )
    run.status = _status(batch_id, status)
    return run


def _status(batch_id: str, status: str) -> BatchStatus:
    return BatchStatus(
        batch_id=batch_id,
        status=status,
        is_terminal=True,
        counts=BatchCounts(total=2, uploaded=2, completed=2, failed=0),
        progress_percentage=100.0,
        created_at=NOW,
        updated_at=NOW,
        finished_at=NOW,
    )


TIMEOUT = FileError("timeout", "the model took too long", retryable=True)
UNSUPPORTED = FileError("unsupported_type", "not an image", retryable=False)


def _two_chunks() -> SubmitRun:
    # File ids repeat across batches (f00000, f00001 in each); results may come in any order.
    first = _batch_run(
        "b-1",
        ["a.jpg", "b.jpg"],
        [_result("f00001", "b.jpg", "failed", TIMEOUT), _result("f00000", "a.jpg")],
        status="completed_with_errors",
    )
    second = _batch_run(
        "b-2",
        ["c.jpg", "d.jpg"],
        [_result("f00000", "c.jpg", "failed", UNSUPPORTED), _result("f00001", "d.jpg", "skipped")],
        status="completed_with_errors",
    )
    return SubmitRun(batches=[first, second])


def test_a_runs_results_come_in_input_order_across_batches() -> None:
    run = _two_chunks()
    assert [result.filename for result in run.results] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert run.batch_ids == ["b-1", "b-2"]


def test_a_runs_summary_and_lists_cover_every_batch() -> None:
    run = _two_chunks()
    assert run.summary() == {"completed": 1, "failed": 2, "skipped": 1}
    assert list(run.summary()) == ["completed", "failed", "skipped"]
    assert [r.filename for r in run.completed()] == ["a.jpg"]
    assert [r.filename for r in run.failed()] == ["b.jpg", "c.jpg"]
    assert [r.filename for r in run.retryable()] == ["b.jpg"]
    assert run.has_failures
    assert not run.ok


def test_a_run_whose_batches_all_completed_is_ok() -> None:
    run = SubmitRun(
        batches=[
            _batch_run("b-1", ["a.jpg"], [_result("f00000", "a.jpg")]),
            _batch_run("b-2", ["b.jpg"], [_result("f00000", "b.jpg")]),
        ]
    )
    assert run.ok
    assert not run.has_failures
    run.raise_for_failures()  # nothing failed: no exception


def test_path_for_finds_the_file_of_a_result_though_file_ids_repeat() -> None:
    run = _two_chunks()
    assert [run.path_for(result) for result in run.results] == [
        Path("in/a.jpg"),
        Path("in/b.jpg"),
        Path("in/c.jpg"),
        Path("in/d.jpg"),
    ]
    assert run.path_for(run.batches[1].batch.files[1]) == Path("in/d.jpg")


def test_path_for_a_result_of_another_run_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="f00000"):
        _two_chunks().path_for(_result("f00000", "a.jpg"))


def test_path_for_follows_batches_added_after_a_first_lookup() -> None:
    run = _two_chunks()
    run.path_for(run.results[0])
    later = _batch_run("b-3", ["e.jpg"], [_result("f00000", "e.jpg")])
    run.batches.append(later)
    assert run.path_for(later.results[0]) == Path("in/e.jpg")


def test_raise_for_failures_carries_every_failure() -> None:
    # Given a run where 5 of 6 files failed
    names = [f"{index}.jpg" for index in range(6)]
    failed = [
        _result(f"f{index:05d}", name, "failed", UNSUPPORTED) for index, name in enumerate(names[1:], 1)
    ]
    run = SubmitRun(batches=[_batch_run("b-1", names, [_result("f00000", names[0]), *failed])])
    # When it is asked to raise, then the error holds them all and names the first three
    with pytest.raises(RunFailedError) as raised:
        run.raise_for_failures()
    assert raised.value.failures == failed
    assert raised.value.total == 6
    assert str(raised.value) == (
        "5 of 6 file(s) failed: 1.jpg (failed, unsupported_type: not an image); "
        "2.jpg (failed, unsupported_type: not an image); 3.jpg (failed, unsupported_type: not an image); "
        "and 2 more"
    )
    assert isinstance(raised.value, FilebatchError)


def test_an_empty_run_has_nothing() -> None:
    run = SubmitRun()
    assert (run.results, run.summary(), run.batch_ids, run.has_failures) == ([], {}, [], False)


def test_upload_progress_keeps_its_old_fields_and_adds_per_file_bytes() -> None:
    # Given a report built the way it was before per-file bytes
    old = UploadProgress("f00000", "a.bin", 1, 2, 50, 200)
    assert (old.file_bytes_done, old.file_bytes_total, old.percentage) == (0, 0, 25.0)
    assert old.file_finished
    # And one sent while a file uploads
    now = UploadProgress("f00000", "a.bin", 0, 2, 50, 400, file_bytes_done=50, file_bytes_total=200)
    assert (now.file_percentage, now.percentage, now.file_finished) == (25.0, 12.5, False)
    # And the file's last one
    assert UploadProgress("f00000", "a.bin", 1, 2, 200, 400, 200, 200).file_finished
