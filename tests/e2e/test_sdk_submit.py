"""The SDK's `submit` against the local stack (issue 11): many files in pipelined batches, with both
clients, and files already described skipped by default."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from filebatch_sdk import AsyncFilebatchClient, FilebatchClient, FileResult, UploadProgress
from tests.e2e.conftest import Stack


def _text_files(directory: Path, count: int, tag: str) -> list[Path]:
    directory.mkdir(parents=True)
    paths = []
    for index in range(count):
        path = directory / f"note-{index:04d}.txt"
        # Different bytes per file and per test: nothing is a duplicate of another test's file.
        path.write_text(f"{tag}: note number {index} about the quarterly figures.\n")
        paths.append(path)
    return paths


def test_250_files_go_in_five_pipelined_batches_and_every_result_comes_back_in_order(
    stack: Stack, tmp_path: Path
) -> None:
    # Given 250 small files in a directory, and a tenant of their own
    paths = _text_files(tmp_path / "notes", 250, "chunked")
    key = stack.local.create_api_key("sdk-chunks")
    completed: list[FileResult] = []
    uploaded: set[tuple[str, str]] = set()
    threads: set[int] = set()

    def on_complete(result: FileResult) -> None:
        threads.add(threading.get_ident())
        completed.append(result)

    def on_upload(progress: UploadProgress) -> None:
        threads.add(threading.get_ident())
        if progress.file_bytes_done == progress.file_bytes_total:
            uploaded.add((progress.batch_id, progress.file_id))

    # When the directory is submitted in batches of 50, two in flight
    with FilebatchClient(stack.api_url, key) as client:
        run = client.submit(
            tmp_path / "notes",
            chunk_size=50,
            max_batches_in_flight=2,
            name="quarterly",
            timeout=300,
            poll_interval=0.5,
            on_file_complete=on_complete,
            on_upload_progress=on_upload,
        )
        statuses = [client.get_batch(batch_id) for batch_id in run.batch_ids]
    # Then five batches of 50 were created, named after the first, and all completed
    assert [s.counts.total for s in statuses] == [50] * 5
    assert [s.name for s in statuses] == ["quarterly", *(f"quarterly-{n}" for n in range(2, 6))]
    assert [s.status for s in statuses] == ["completed"] * 5
    # And the run has every file's result, in the order of the directory walk
    assert [run.path_for(r) for r in run.results] == paths
    assert run.summary() == {"completed": 250}
    assert all(r.description is not None and r.description.text for r in run.results)
    # And each file was reported uploaded and completed once, on one callback thread
    assert len(uploaded) == 250
    assert sorted(r.filename for r in completed) == sorted(p.name for p in paths)
    assert len(threads) == 1


def test_the_async_client_submits_the_same_way_and_skips_files_it_already_had_described(
    stack: Stack, tmp_path: Path
) -> None:
    # Given 12 files and a tenant of their own
    paths = _text_files(tmp_path / "notes", 12, "async")
    key = stack.local.create_api_key("sdk-async")

    async def submit_twice() -> tuple[list[FileResult], list[FileResult], list[str]]:
        async with AsyncFilebatchClient(stack.api_url, key) as client:
            first = await client.submit(paths, chunk_size=5, timeout=300, poll_interval=0.5)
            second = await client.submit(paths, chunk_size=5, timeout=300, poll_interval=0.5)
            statuses = [(await client.get_batch(b)).status for b in first.batch_ids + second.batch_ids]
        return first.results, second.results, statuses

    # When they are submitted twice from asyncio code, five to a batch
    first, second, statuses = asyncio.run(submit_twice())
    # Then the first run described every file, in input order, in three batches
    assert [r.filename for r in first] == [p.name for p in paths]
    assert {r.status for r in first} == {"completed"}
    # And the second run uploaded nothing: every file was skipped with the first run's result
    assert {r.status for r in second} == {"skipped"}
    assert [r.duplicate_of.file_id if r.duplicate_of else None for r in second] == [r.file_id for r in first]
    assert [r.description.text if r.description else None for r in second] == [
        r.description.text if r.description else None for r in first
    ]
    assert statuses == ["completed"] * 6
