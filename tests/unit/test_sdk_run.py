"""The I/O-free pieces of the SDK's chunked `submit`: its inputs, its state file, the thread of
its callbacks, and the run object it returns."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
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
    StateFileError,
    StateFileMismatchError,
    SubmitRun,
    UploadProgress,
    to_json,
)
from filebatch_sdk._callbacks import CallbackDispatcher
from filebatch_sdk._inputs import InputFile, chunked, iter_file_inputs, walk_directory
from filebatch_sdk._state import ChunkFile, ChunkState, RunState

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


# ---- state file ---------------------------------------------------------------------------------

FINGERPRINT = {"chunk_size": 2, "name": "june", "upload_method": "PUT", "skip_duplicates": True}


def _files(*names: str, size: int = 10) -> list[ChunkFile]:
    return [
        ChunkFile.declared(FileSpec(name, size, "image/jpeg", sha256=name * 2), f"/data/{name}")
        for name in names
    ]


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_is_recorded_and_resumed_where_it_stopped(tmp_path: Path) -> None:
    # Given a run that recorded a finished chunk and a half uploaded one
    path = tmp_path / "run.state"
    with RunState.open(path, run_fingerprint=FINGERPRINT) as state:
        first = state.start_chunk(0, _files("a", "b"))
        state.created(0, "b-1", ["f00001"])
        state.uploaded(0, "f00000")
        state.uploaded(0, "f00001")
        state.ended(0, "completed")
        second = state.start_chunk(1, _files("c", "d"), idempotency_key="my-key-1")
        state.created(1, "b-2", ["f00001"])
        state.uploaded(1, "f00001")
    # When the same run opens it again
    with RunState.open(path, run_fingerprint=dict(FINGERPRINT)) as resumed:
        # Then both chunks are as they were left
        assert resumed.chunk_indexes == [0, 1]
        done = resumed.chunk(0)
        assert done is not None
        assert (done.idempotency_key, done.batch_id, done.uploaded, done.ended) == (
            first.idempotency_key,
            "b-1",
            {"f00000", "f00001"},
            "completed",
        )
        assert done.files == tuple(_files("a", "b"))
        # And starting chunk 1 again hands back its recorded key and uploads, not a new chunk
        again = resumed.start_chunk(1, _files("c", "d"), idempotency_key="another-key")
        assert (again.idempotency_key, again.batch_id, again.uploaded, again.ended) == (
            second.idempotency_key,
            "b-2",
            {"f00001"},
            None,
        )
        assert again.idempotency_key == "my-key-1"
        assert resumed.chunk(2) is None
    # And the file is the log of what happened, a line each
    assert [record["record"] for record in _records(path)] == [
        "run",
        "chunk",
        "created",
        "uploaded",
        "uploaded",
        "ended",
        "chunk",
        "created",
        "uploaded",
    ]


def test_a_new_chunk_gets_a_fresh_key_of_its_own(tmp_path: Path) -> None:
    with RunState.open(tmp_path / "s", run_fingerprint=FINGERPRINT) as state:
        keys = {state.start_chunk(index, _files(str(index))).idempotency_key for index in range(3)}
    assert len(keys) == 3


def test_the_chunks_handed_out_are_copies(tmp_path: Path) -> None:
    # Given a started chunk
    with RunState.open(tmp_path / "s", run_fingerprint=FINGERPRINT) as state:
        started = state.start_chunk(0, _files("a"))
        # When the copies handed out are changed
        started.uploaded.add("f00000")
        copy = state.chunk(0)
        assert copy is not None
        copy.batch_id = "b-9"
        # Then the state is not: only its own methods record
        assert state.chunk(0) == ChunkState(started.idempotency_key, tuple(_files("a")))


def test_a_last_line_cut_by_a_crash_is_dropped_and_cut_off(tmp_path: Path) -> None:
    # Given a state file whose last write was cut short
    path = tmp_path / "run.state"
    with RunState.open(path, run_fingerprint=FINGERPRINT) as state:
        state.start_chunk(0, _files("a", "b"))
        state.created(0, "b-1", ["f00001"])
        state.uploaded(0, "f00000")
    with path.open("ab") as log:
        log.write(b'{"file_id":"f00001","index":0,"rec')
    # When it is opened again and the run goes on
    with RunState.open(path, run_fingerprint=FINGERPRINT) as resumed:
        chunk = resumed.chunk(0)
        assert chunk is not None
        assert chunk.uploaded == {"f00000"}
        resumed.uploaded(0, "f00001")
    # Then the cut line is gone and the new record is a line of its own
    with RunState.open(path, run_fingerprint=FINGERPRINT) as again:
        chunk = again.chunk(0)
        assert chunk is not None
        assert chunk.uploaded == {"f00000", "f00001"}
    assert len(_records(path)) == 5


def test_a_last_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    # Given a state file whose last record lost its newline
    path = tmp_path / "run.state"
    with RunState.open(path, run_fingerprint=FINGERPRINT) as state:
        state.start_chunk(0, _files("a"))
        state.created(0, "b-1", ["f00001"])
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    # When it is opened and written to
    with RunState.open(path, run_fingerprint=FINGERPRINT) as resumed:
        resumed.uploaded(0, "f00000")
    # Then both the record and the new one are read back
    with RunState.open(path, run_fingerprint=FINGERPRINT) as again:
        chunk = again.chunk(0)
        assert chunk is not None
        assert (chunk.batch_id, chunk.uploaded) == ("b-1", {"f00000"})


def test_a_bad_line_before_the_last_is_an_error(tmp_path: Path) -> None:
    # Given a state file with a garbled line in the middle
    path = tmp_path / "run.state"
    with RunState.open(path, run_fingerprint=FINGERPRINT) as state:
        state.start_chunk(0, _files("a"))
        state.created(0, "b-1", ["f00001"])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"{garbage\n" + b"".join(lines[1:]))
    # When it is opened, then the error names the line
    with pytest.raises(StateFileError, match=r"run\.state:2: not a JSON record"):
        RunState.open(path, run_fingerprint=FINGERPRINT)


def test_a_record_of_a_chunk_never_started_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    RunState.open(path, run_fingerprint=FINGERPRINT).close()
    with path.open("a") as log:
        log.write('{"record":"created","index":4,"batch_id":"b-9"}\n')
    with pytest.raises(StateFileError, match=r"run\.state:2: not a record of this run"):
        RunState.open(path, run_fingerprint=FINGERPRINT)


def test_a_file_that_is_not_a_state_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"file_id": "f00000", "status": "completed"}\n')
    with pytest.raises(StateFileError, match="not a filebatch submit state file"):
        RunState.open(path, run_fingerprint=FINGERPRINT)


@pytest.mark.parametrize("content", [b"", b'{"fingerprint":{"chunk_si'], ids=["empty", "cut-first-line"])
def test_a_file_without_a_whole_first_line_is_a_new_state_file(tmp_path: Path, content: bytes) -> None:
    # Given a file a crash left empty, or cut in its first line
    path = tmp_path / "run.state"
    path.write_bytes(content)
    # When it is opened, then it starts a run
    with RunState.open(path, run_fingerprint=FINGERPRINT) as state:
        assert state.chunk_indexes == []
    assert _records(path) == [{"record": "run", "version": 1, "fingerprint": FINGERPRINT}]


def test_another_runs_state_file_is_refused_naming_the_difference(tmp_path: Path) -> None:
    # Given a state file of a run with chunks of 2
    path = tmp_path / "run.state"
    RunState.open(path, run_fingerprint=FINGERPRINT).close()
    # When a run with chunks of 3 opens it, then it is refused, naming the option
    with pytest.raises(StateFileMismatchError, match="chunk_size: 2 there, 3 here"):
        RunState.open(path, run_fingerprint={**FINGERPRINT, "chunk_size": 3})
    # And it is a ValueError and an SDK error
    assert issubclass(StateFileMismatchError, ValueError)
    assert issubclass(StateFileMismatchError, FilebatchError)


def test_a_fingerprint_is_compared_as_json(tmp_path: Path) -> None:
    # Given a fingerprint holding a tuple, which the file stores as a list
    path = tmp_path / "run.state"
    fingerprint = {**FINGERPRINT, "description": {"detail": "brief", "languages": ("en", "pt")}}
    RunState.open(path, run_fingerprint=fingerprint).close()
    # When the same run opens it again, then it matches
    RunState.open(path, run_fingerprint=fingerprint).close()


@pytest.mark.parametrize(
    ("now", "message"),
    [
        (_files("a", "x"), r"file 1 of chunk 0 was /data/b \(10 bytes, sha256 bb\), is now /data/x"),
        (_files("a", "b", size=11), r"file 0 of chunk 0 was /data/a \(10 bytes.*is now /data/a \(11 bytes"),
        (_files("a"), "chunk 0 had 2 file.s., now has 1"),
        (_files("a", "b", "c"), "chunk 0 had 2 file.s., now has 3"),
    ],
)
def test_a_chunk_with_other_files_than_recorded_is_refused(
    tmp_path: Path, now: list[ChunkFile], message: str
) -> None:
    # Given a run that recorded chunk 0 as files a and b
    path = tmp_path / "run.state"
    with RunState.open(path, run_fingerprint=FINGERPRINT) as state:
        state.start_chunk(0, _files("a", "b"))
    # When a resumed run puts other files in chunk 0, then it is refused naming the first difference
    with (
        RunState.open(path, run_fingerprint=FINGERPRINT) as resumed,
        pytest.raises(StateFileMismatchError, match=message),
    ):
        resumed.start_chunk(0, now)


def test_a_changed_sha256_is_a_different_file(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    with RunState.open(path, run_fingerprint=FINGERPRINT) as state:
        state.start_chunk(0, _files("a"))
        changed = [ChunkFile.declared(FileSpec("a", 10, "image/jpeg", sha256="00"), "/data/a")]
        with pytest.raises(StateFileMismatchError, match=r"sha256 aa\).*sha256 00\)"):
            state.start_chunk(0, changed)


def test_paths_are_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = FileSpec("a.jpg", 3, "image/jpeg")
    assert ChunkFile.declared(spec, "a.jpg").path == str(tmp_path / "a.jpg")
    assert ChunkFile.declared(spec, None).path is None


def test_records_of_a_chunk_never_started_are_refused(tmp_path: Path) -> None:
    with (
        RunState.open(tmp_path / "s", run_fingerprint=FINGERPRINT) as state,
        pytest.raises(ValueError, match="chunk 3 was not started"),
    ):
        state.uploaded(3, "f00000")


def test_uploads_recorded_from_many_threads_are_all_kept(tmp_path: Path) -> None:
    # Given a chunk being uploaded by 8 threads that record together
    path = tmp_path / "run.state"
    threads, per_thread = 8, 50
    start = threading.Barrier(threads)
    with RunState.open(path, run_fingerprint=FINGERPRINT) as state:
        state.start_chunk(0, _files("a"))
        state.created(0, "b-1", ["f00001"])

        def upload(worker: int) -> None:
            start.wait(WAIT)
            for number in range(per_thread):
                state.uploaded(0, f"f{worker:02d}{number:03d}")

        workers = [threading.Thread(target=upload, args=(worker,)) for worker in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    # When the file is read back, then every upload is there, each on a whole line of its own
    expected = {f"f{worker:02d}{number:03d}" for worker in range(threads) for number in range(per_thread)}
    with RunState.open(path, run_fingerprint=FINGERPRINT) as resumed:
        chunk = resumed.chunk(0)
        assert chunk is not None
        assert chunk.uploaded == expected
    assert len(_records(path)) == 3 + threads * per_thread


# ---- callbacks ----------------------------------------------------------------------------------


def _progress(file_id: str, done: int, total: int = 4) -> UploadProgress:
    return UploadProgress(
        file_id=file_id,
        filename=f"{file_id}.bin",
        files_done=0,
        files_total=2,
        bytes_done=done,
        bytes_total=2 * total,
        file_bytes_done=done,
        file_bytes_total=total,
    )


class _Blocker:
    """A callback that holds the dispatcher's thread until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, _: object) -> None:
        self.started.set()
        assert self.release.wait(WAIT), "the test never released the callback"


def test_posting_returns_while_a_callback_is_blocked(tmp_path: Path) -> None:
    # Given a callback blocked on an event
    blocker = _Blocker()
    delivered: list[int] = []
    with CallbackDispatcher() as dispatcher:
        dispatcher.post(blocker, None)
        assert blocker.started.wait(WAIT)
        # When more is posted while it is blocked, then every post returns (this thread goes on)
        for number in range(100):
            dispatcher.post(delivered.append, number)
        assert delivered == []
        blocker.release.set()
    # And once released everything is delivered, in order
    assert delivered == list(range(100))


def test_progress_is_coalesced_per_file_keeping_the_last_report_of_each(tmp_path: Path) -> None:
    # Given a blocked dispatcher
    blocker = _Blocker()
    delivered: list[UploadProgress] = []
    with CallbackDispatcher() as dispatcher:
        dispatcher.post(blocker, None)
        assert blocker.started.wait(WAIT)
        # When two files report progress meanwhile, file a up to its end
        for progress in [_progress("a", 1), _progress("b", 1), _progress("a", 2), _progress("b", 2)]:
            dispatcher.post_progress(delivered.append, progress)
        dispatcher.post_progress(delivered.append, _progress("a", 3))
        dispatcher.post_progress(delivered.append, _progress("a", 4))
        dispatcher.post_progress(delivered.append, _progress("b", 3))
        blocker.release.set()
    # Then each file's latest report is delivered, a's final one included, in the order of their data
    assert [(p.file_id, p.file_bytes_done) for p in delivered] == [("a", 4), ("b", 3)]


def test_a_files_final_report_is_never_replaced(tmp_path: Path) -> None:
    # Given a blocked dispatcher
    blocker = _Blocker()
    delivered: list[UploadProgress] = []
    with CallbackDispatcher() as dispatcher:
        dispatcher.post(blocker, None)
        assert blocker.started.wait(WAIT)
        # When a file reports its end, then starts again (uploaded once more) and reports twice
        for done in (2, 4, 1, 3):
            dispatcher.post_progress(delivered.append, _progress("a", done))
        blocker.release.set()
    # Then its final report stays, followed by the latest one after it
    assert [p.file_bytes_done for p in delivered] == [4, 3]


def test_reports_without_file_bytes_are_all_delivered(tmp_path: Path) -> None:
    # Given reports of an uploader that sends no per-file bytes (one per finished file)
    blocker = _Blocker()
    delivered: list[UploadProgress] = []
    reports = [UploadProgress("a", "a.bin", 1, 2, 5, 9), UploadProgress("a", "a.bin", 2, 2, 9, 9)]
    with CallbackDispatcher() as dispatcher:
        dispatcher.post(blocker, None)
        assert blocker.started.wait(WAIT)
        for report in reports:
            dispatcher.post_progress(delivered.append, report)
        blocker.release.set()
    # Then none is coalesced away: each is a file's last report
    assert delivered == reports


def test_progress_and_other_events_keep_their_order(tmp_path: Path) -> None:
    # Given a file's progress followed by its completion, with an unblocked dispatcher
    events: list[str] = []
    with CallbackDispatcher() as dispatcher:
        for done in (1, 2, 3, 4):
            dispatcher.post_progress(
                lambda p: events.append(f"progress {p.file_bytes_done}"), _progress("a", done)
            )
        dispatcher.post(events.append, "complete a")
    # Then, whatever was coalesced, the final progress comes before the completion
    assert events[-2:] == ["progress 4", "complete a"]
    assert events == [*sorted(events[:-1]), "complete a"]


def test_callbacks_run_on_one_thread_of_their_own(tmp_path: Path) -> None:
    # Given posts from several threads at once
    threads, per_thread = 4, 25
    seen: list[tuple[int, str]] = []
    start = threading.Barrier(threads)
    with CallbackDispatcher() as dispatcher:

        def poster(worker: int) -> None:
            start.wait(WAIT)
            for _ in range(per_thread):
                dispatcher.post(lambda w: seen.append((w, threading.current_thread().name)), worker)

        workers = [threading.Thread(target=poster, args=(worker,)) for worker in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    # Then every callback ran, all on the dispatcher's thread
    assert len(seen) == threads * per_thread
    assert {name for _, name in seen} == {"filebatch-callbacks"}


def test_a_raising_callback_is_logged_and_the_next_ones_run(caplog: pytest.LogCaptureFixture) -> None:
    # Given callbacks of which two raise
    delivered: list[str] = []

    def broken(message: str) -> None:
        raise RuntimeError(message)

    with caplog.at_level(logging.ERROR, logger="filebatch_sdk"), CallbackDispatcher() as dispatcher:
        dispatcher.post(broken, "first")
        dispatcher.post(delivered.append, "after")
        dispatcher.post(broken, "second")
    # Then the others ran, each failure was logged with its traceback, and the first is kept
    assert delivered == ["after"]
    failures = [record for record in caplog.records if record.name == "filebatch_sdk"]
    assert len(failures) == 2
    assert all(record.exc_info is not None for record in failures)
    assert isinstance(dispatcher.first_error, RuntimeError)
    assert str(dispatcher.first_error) == "first"


def test_no_error_leaves_first_error_empty() -> None:
    with CallbackDispatcher() as dispatcher:
        dispatcher.post(lambda _: None, None)
    assert dispatcher.first_error is None


def test_posting_from_asyncio_code_delivers_on_the_dispatchers_thread() -> None:
    # Given a coroutine that posts from the event loop's thread
    seen: list[tuple[str, str]] = []

    async def main(dispatcher: CallbackDispatcher) -> str:
        dispatcher.post(lambda text: seen.append((text, threading.current_thread().name)), "from the loop")
        await asyncio.sleep(0)
        return threading.current_thread().name

    with CallbackDispatcher() as dispatcher:
        loop_thread = asyncio.run(main(dispatcher))
    # Then the callback ran on the dispatcher's thread, not the loop's
    assert seen == [("from the loop", "filebatch-callbacks")]
    assert loop_thread != "filebatch-callbacks"


def test_a_closed_dispatcher_refuses_posts_and_closes_again_quietly() -> None:
    dispatcher = CallbackDispatcher()
    dispatcher.close()
    dispatcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        dispatcher.post(print, "late")


def test_a_callback_cannot_close_its_own_dispatcher() -> None:
    with CallbackDispatcher() as dispatcher:
        dispatcher.post(lambda _: dispatcher.close(), None)
    assert isinstance(dispatcher.first_error, RuntimeError)


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


def test_a_run_as_json_is_its_batches() -> None:
    # Given a run whose paths were looked up (which fills its private index)
    run = _two_chunks()
    run.path_for(run.results[0])
    # When it is turned into JSON, then it holds its batches only
    document = to_json(run)
    assert list(document) == ["batches"]
    assert [batch["batch"]["batch_id"] for batch in document["batches"]] == ["b-1", "b-2"]


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
