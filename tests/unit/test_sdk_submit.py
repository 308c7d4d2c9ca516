"""`submit` of any number of files: batches of `chunk_size`, pipelined, callbacks on one thread,
results in input order, a resumable state file, retries of failed files — on both clients.

Against the fake API of tests/unit/test_sdk.py (real HTTP on 127.0.0.1). Each test runs twice,
with `FilebatchClient` and with `AsyncFilebatchClient` (the `client` fixture), since both run the
one implementation of `submit` (filebatch_sdk._submit).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from filebatch_sdk import (
    BatchStatus,
    FilebatchClient,
    FilebatchConnectionError,
    FileResult,
    RunFailedError,
    UploadProgress,
)
from filebatch_sdk._protocol import Protocol
from tests.unit import test_sdk
from tests.unit.test_sdk import FakeApi, FakeBatch, Scripted, serving

# The SDK tests' fixtures, shared rather than copied.
fake_api = test_sdk.fake_api
sleeps = test_sdk.sleeps
client = test_sdk.client


def _files(directory: Path, count: int, *, flaky: tuple[int, ...] = ()) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        name = f"flaky-{index:03d}.txt" if index in flaky else f"file-{index:03d}.txt"
        path = directory / name
        path.write_bytes(f"content of file {index}\n".encode() * (index + 1))
        paths.append(path)
    return paths


def _creates(fake: FakeApi) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in fake.calls("POST", "/v1/batches")]


def test_files_go_in_batches_of_chunk_size_and_results_come_back_in_input_order(
    client: FilebatchClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given seven files, the third failing
    paths = _files(tmp_path / "in", 7, flaky=(2,))
    # When they are submitted three to a batch under a name
    run = client.submit(paths, chunk_size=3, name="june")
    # Then three batches were created (3, 3 and 1 files), named june, june-2, june-3, each
    # declaring its files in order with their hashes, skipping duplicates by default
    creates = _creates(fake_api)
    assert [[f["filename"] for f in c["files"]] for c in creates] == [
        [p.name for p in paths[0:3]],
        [p.name for p in paths[3:6]],
        [p.name for p in paths[6:7]],
    ]
    assert [c["name"] for c in creates] == ["june", "june-2", "june-3"]
    assert all(c["skip_duplicates"] is True for c in creates)
    assert all(len(f["sha256"]) == 64 for c in creates for f in c["files"])
    # And the run has every result in input order, across batches
    assert len(run.batches) == 3
    assert [r.filename for r in run.results] == [p.name for p in paths]
    assert [run.path_for(r) for r in run.results] == paths
    assert run.summary() == {"completed": 6, "failed": 1}
    assert [r.filename for r in run.failed()] == [paths[2].name]
    assert run.has_failures and not run.ok


class PipelineFakeApi(FakeApi):
    """A batch ends only once the NEXT batch's files have all been uploaded (the last batch as
    usual): a client that waited for each batch to end before uploading the next would never see
    one end. Also counts the batches open (created, not yet seen ended) at each create."""

    def __init__(self, expected_batches: int) -> None:
        super().__init__()
        self.polls_until_done = 1
        self.expected_batches = expected_batches
        self.open_at_create: list[int] = []
        self.seen_ended: set[str] = set()

    def _create(self, body: dict[str, Any]) -> Scripted:
        self.open_at_create.append(len(self.batches) - len(self.seen_ended) + 1)
        return super()._create(body)

    def _status(self, batch: FakeBatch) -> Scripted:
        order = list(self.batches)
        position = order.index(batch.batch_id)
        following = self.batches[order[position + 1]] if position + 1 < len(order) else None
        may_end = position == self.expected_batches - 1 or (
            following is not None and all(f.uploaded is not None for f in following.files)
        )
        if not may_end:
            batch.polls = -1  # the poll below counts it back to 0: not finished
        answer = super()._status(batch)
        if answer.body["is_terminal"]:
            self.seen_ended.add(batch.batch_id)
        return answer


class TestPipelining:
    @pytest.fixture
    def fake_api(self) -> Iterator[PipelineFakeApi]:
        # Overrides the module's fake for the `client` fixture of these tests.
        with serving(PipelineFakeApi(expected_batches=4)) as fake:
            yield fake

    def test_the_next_batch_uploads_while_the_previous_one_is_processed_with_a_bounded_number_open(
        self, client: FilebatchClient, fake_api: PipelineFakeApi, tmp_path: Path
    ) -> None:
        # Given a service where each batch ends only after the next batch's files arrived
        paths = _files(tmp_path / "in", 8)
        # When eight files are submitted two to a batch, two batches in flight
        run = client.submit(paths, chunk_size=2, max_batches_in_flight=2, timeout=30)
        # Then every batch ended (so batch k+1 was uploaded while batch k was being followed)
        assert [b.status.status if b.status else None for b in run.batches] == ["completed"] * 4
        assert [r.filename for r in run.results] == [p.name for p in paths]
        # And no create ever made more than two batches open at once
        assert max(fake_api.open_at_create) == 2


def test_callbacks_run_on_one_thread_never_block_uploads_and_see_every_file(
    client: FilebatchClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given files, one failing, and callbacks that record their thread; the first progress
    # callback blocks until every file has been uploaded
    paths = _files(tmp_path / "in", 5, flaky=(4,))
    all_uploaded = threading.Event()
    threads: set[int] = set()
    progress: list[UploadProgress] = []
    statuses: list[BatchStatus] = []
    completed: list[FileResult] = []
    failed: list[FileResult] = []
    waited: list[bool] = []

    def on_upload_progress(update: UploadProgress) -> None:
        threads.add(threading.get_ident())
        if not waited:
            # Uploads must go on while this callback is busy.
            waited.append(all_uploaded.wait(timeout=20))
        progress.append(update)

    def on_batch_status(status: BatchStatus) -> None:
        threads.add(threading.get_ident())
        statuses.append(status)

    store = fake_api._put

    def put_and_count(batch_id: str, file_id: str, body: bytes) -> Scripted:
        answer = store(batch_id, file_id, body)
        if sum(f.uploaded is not None for b in fake_api.batches.values() for f in b.files) == len(paths):
            all_uploaded.set()
        return answer

    fake_api._put = put_and_count  # type: ignore[method-assign]

    def on_file(sink: list[FileResult]) -> Any:
        def record(result: FileResult) -> None:
            threads.add(threading.get_ident())
            sink.append(result)

        return record

    # When they are submitted in batches of two, one batch at a time
    run = client.submit(
        paths,
        chunk_size=2,
        max_batches_in_flight=1,
        on_upload_progress=on_upload_progress,
        on_batch_status=on_batch_status,
        on_file_complete=on_file(completed),
        on_file_failed=on_file(failed),
    )
    # Then the blocked callback did not hold the uploads back
    assert waited == [True]
    # And every callback ran on one thread, not the caller's
    assert len(threads) == 1 and threading.get_ident() not in threads
    # And each file was reported once as complete or failed, and each file's bytes reached 100 %
    assert sorted(r.filename for r in completed) == sorted(p.name for p in paths[:4])
    assert [r.filename for r in failed] == [paths[4].name]
    finished = {(u.batch_id, u.file_id) for u in progress if u.file_bytes_done == u.file_bytes_total}
    assert len(finished) == 5
    assert {s.batch_id for s in statuses} == set(run.batch_ids)
    for batch_id in run.batch_ids:
        assert [s for s in statuses if s.batch_id == batch_id][-1].is_terminal


def test_raise_on_failure_raises_one_error_carrying_every_failed_file(
    client: FilebatchClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given four files, two failing, in two batches
    paths = _files(tmp_path / "in", 4, flaky=(0, 3))
    # When they are submitted asking to raise on failure
    with pytest.raises(RunFailedError) as raised:
        client.submit(paths, chunk_size=2, raise_on_failure=True)
    # Then the error carries both failures
    assert sorted(r.filename for r in raised.value.failures) == sorted([paths[0].name, paths[3].name])


def test_retry_failed_retries_only_the_retryable_files_of_each_batch(
    client: FilebatchClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given a run of two batches where one file of the second batch failed (retryable)
    paths = _files(tmp_path / "in", 4, flaky=(3,))
    run = client.submit(paths, chunk_size=2, timeout=30)
    # When its failures are retried
    again = (
        run.retry_failed() if isinstance(client, FilebatchClient) else client._wait(run.aretry_failed())  # type: ignore[attr-defined]
    )
    # Then the retry route was called once, for the second batch and its failed file
    retries = [(r.path, json.loads(r.body)) for r in fake_api.requests if r.path.endswith("/retry")]
    assert retries == [(f"/v1/batches/{run.batch_ids[1]}/retry", {"file_ids": ["f00002"]})]
    # And the new run has every file's result, in input order
    assert [r.filename for r in again.results] == [p.name for p in paths]


def test_a_directory_is_walked_and_a_generator_is_read_lazily(
    client: FilebatchClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given a directory with files in a subdirectory and a hidden file
    root = tmp_path / "photos"
    _files(root / "b", 2)
    _files(root / "a", 1)
    (root / ".hidden").write_text("not sent")
    # When the directory is submitted
    run = client.submit(root, chunk_size=10)
    # Then its files were sent in path order, the hidden one left out
    assert [run.path_for(r).relative_to(root).as_posix() for r in run.results] == [
        "a/file-000.txt",
        "b/file-000.txt",
        "b/file-001.txt",
    ]


def test_a_run_interrupted_after_its_first_batch_resumes_without_creating_or_uploading_twice(
    client: FilebatchClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given five files and a state file, and a first run whose input breaks after three files
    paths = _files(tmp_path / "in", 5)
    state_file = tmp_path / "run.jsonl"

    def breaking() -> Iterator[Path]:
        yield from paths[:3]
        raise RuntimeError("the machine went down")

    with pytest.raises(RuntimeError, match="went down"):
        client.submit(breaking(), chunk_size=2, state_file=state_file)
    first_batch = next(iter(fake_api.batches))
    puts_before = len([r for r in fake_api.requests if r.method == "PUT"])
    assert puts_before == 2
    # When the same call is made again with every file
    run = client.submit(paths, chunk_size=2, state_file=state_file)
    # Then the first batch was not created again and none of its files was uploaded again
    assert len(fake_api.batches) == 3
    assert run.batch_ids[0] == first_batch
    puts = [r.path for r in fake_api.requests if r.method == "PUT"]
    assert len(puts) == 5
    assert len(set(puts)) == 5
    # And the run has all five results in input order
    assert [r.filename for r in run.results] == [p.name for p in paths]


def test_a_create_whose_answer_was_lost_is_answered_with_the_same_batch_when_the_run_resumes(
    fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given a first run whose create reached the server but whose every answer was lost
    paths = _files(tmp_path / "in", 2)
    state_file = tmp_path / "run.jsonl"
    fake_api.lose_answers("POST", "/v1/batches", count=2)
    with (
        FilebatchClient(fake_api.base_url, test_sdk.API_KEY, sleep=lambda _: None, max_retries=1) as sdk,
        pytest.raises(FilebatchConnectionError),
    ):
        sdk.submit(paths, state_file=state_file)
    assert len(fake_api.batches) == 1
    # When the run is resumed
    with FilebatchClient(fake_api.base_url, test_sdk.API_KEY, sleep=lambda _: None) as sdk:
        run = sdk.submit(paths, state_file=state_file)
    # Then the create was sent with the same key and answered with the batch it had created
    keys = {r.headers["idempotency-key"] for r in fake_api.calls("POST", "/v1/batches")}
    assert len(keys) == 1
    assert len(fake_api.batches) == 1
    assert run.batch_ids == list(fake_api.batches)


def test_an_interrupted_upload_stops_the_queued_files_instead_of_sending_them_all(
    fake_api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given eight files uploaded two at a time, and Ctrl-C while the third one goes up
    paths = _files(tmp_path / "in", 8)
    upload_file = Protocol.upload_file

    def interrupted_at_the_third(
        self: Protocol, batch_id: str, created: Any, *args: Any, **kwargs: Any
    ) -> Any:
        if created.file_id == "f00003":
            raise KeyboardInterrupt
        return (yield from upload_file(self, batch_id, created, *args, **kwargs))

    monkeypatch.setattr(Protocol, "upload_file", interrupted_at_the_third)
    # When they are submitted
    with (
        FilebatchClient(fake_api.base_url, test_sdk.API_KEY, sleep=lambda _: None) as sdk,
        pytest.raises(KeyboardInterrupt),
    ):
        sdk.submit(paths, concurrency=2)
    # Then the files queued behind it were never sent (at most the one beside it finished)
    assert len([r for r in fake_api.requests if r.method == "PUT"]) <= 3


def test_a_file_whose_upload_keeps_failing_ends_upload_expired_and_the_rest_of_its_batch_goes_on(
    client: FilebatchClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given three files, storage refusing the second one's upload every time
    paths = _files(tmp_path / "in", 3)
    refused = Scripted(403, b"<Error><Code>AccessDenied</Code></Error>")
    fake_api.script("PUT", f"/upload/{'b-' + '0' * 31 + '1'}/f00002", refused)
    failed: list[FileResult] = []
    # When they are submitted
    run = client.submit(paths, on_file_failed=failed.append)
    # Then the batch was closed so that the others were processed, and it ended
    (batch,) = run.batches
    assert fake_api.calls("POST", f"/v1/batches/{batch.batch_id}/close")
    assert batch.status is not None and batch.status.status == "completed_with_errors"
    # And the refused file ended upload_expired, counted as a failure with the storage's reason
    assert [r.status for r in run.results] == ["completed", "upload_expired", "completed"]
    assert [r.filename for r in run.failed()] == [paths[1].name] == [r.filename for r in failed]
    assert run.has_failures
    assert [(f.file_id, f.reason, f.status) for f in run.upload_failures] == [
        ("f00002", "HTTP 403 AccessDenied", 403)
    ]


def test_a_run_keeps_its_files_but_not_their_upload_instructions(
    client: FilebatchClient, fake_api: FakeApi, tmp_path: Path
) -> None:
    # Given files submitted in two batches
    paths = _files(tmp_path / "in", 4)
    # When the run is over
    run = client.submit(paths, chunk_size=2)
    # Then each batch still lists its files (ids, names, sizes), without the presigned URLs that
    # would make a run of many files heavy
    files = [file for batch in run.batches for file in batch.batch.files]
    assert [(f.file_id, f.filename, f.size) for f in files] == [
        (f"f0000{n}", p.name, p.stat().st_size) for n, p in zip([1, 2, 1, 2], paths, strict=True)
    ]
    assert all(f.upload is None and f.duplicate_of is None for f in files)
    assert [run.path_for(f) for f in files] == paths
