"""Close, the upload window, cancel and retry (filebatch.services.lifecycle) on in-memory ports:
every transition is conditional, repeatable, and keeps the per-state counts adding up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from filebatch.errors import ConflictError, InvalidRequestError, StorageUnavailableError
from filebatch.models.api import CreateBatchRequest, FileSpec, PageQuery, RetryRequest
from filebatch.models.domain import (
    Batch,
    BatchStatus,
    FileError,
    FileStatus,
    Tenant,
    manifest_key,
    upload_key,
)
from filebatch.services.batches import UploadLimits, create_batch, list_uploads
from filebatch.services.cursors import CursorSigner
from filebatch.services.lifecycle import cancel_batch, close_batch, retry_batch, sweep
from filebatch.services.uploads import record_upload
from tests.unit.fakes import (
    InMemoryRepository,
    InMemoryStorage,
    RecordingEvents,
    RecordingStarter,
    StaticCursorKeys,
)

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
BATCH_ID = "b-" + "c" * 32
ACME = Tenant(tenant_id="acme")
LIMITS = UploadLimits(max_files=100, max_file_bytes=100, url_ttl_seconds=600, grace_seconds=60)


class World:
    def __init__(self, files: int) -> None:
        self.repo, self.storage, self.workflow = InMemoryRepository(), InMemoryStorage(), RecordingStarter()
        self.events = RecordingEvents()
        create_batch(
            self.repo,
            self.storage,
            ACME,
            CreateBatchRequest(
                files=[FileSpec(filename=f"{i}.png", size=5, content_type="image/png") for i in range(files)]
            ),
            limits=LIMITS,
            retention_days=30,
            cursors=CursorSigner(StaticCursorKeys()),
            now=NOW,
            make_batch_id=lambda: BATCH_ID,
        )

    def upload(self, *file_ids: str, at: datetime = NOW) -> None:
        for file_id in file_ids:
            key = upload_key("acme", BATCH_ID, file_id)
            record_upload(self.repo, self.workflow, key=key, size=5, version_id=None, now=at)

    def batch(self) -> Batch:
        batch = self.repo.get_batch("acme", BATCH_ID)
        assert batch is not None
        return batch

    def status(self, file_id: str) -> FileStatus:
        return self.repo.files[("acme", BATCH_ID, file_id)].status

    def counts(self) -> dict[FileStatus, int]:
        counts = {status: n for status, n in self.batch().counts.items() if n}
        # The counts are the files' states, always
        actual: dict[FileStatus, int] = {}
        for (_, batch_id, _), file in self.repo.files.items():
            if batch_id == BATCH_ID:
                actual[file.status] = actual.get(file.status, 0) + 1
        assert counts == actual
        return counts

    def run(self, *outcomes: tuple[str, FileStatus, bool]) -> None:
        """The workflow's steps for some files: processing, then a result (failed ones retryable or not)."""
        for file_id, to, retryable in outcomes:
            file = self.repo.files[("acme", BATCH_ID, file_id)]
            assert self.repo.move_file(
                "acme", BATCH_ID, file_id, expected=file.status, to=FileStatus.PROCESSING, at=NOW
            )
            error = FileError(code="x", message="x", retryable=retryable) if to is FileStatus.FAILED else None
            assert self.repo.move_file(
                "acme", BATCH_ID, file_id, expected=FileStatus.PROCESSING, to=to, at=NOW, error=error
            )

    def finish(self, retry: int = 0) -> None:
        from filebatch.services.processing import finalize_batch

        finalize_batch(
            self.repo,
            "acme",
            BATCH_ID,
            storage=self.storage,
            now=NOW,
            events=self.events,
            provider="local",
            retry=retry,
        )


# -- close and the upload window ----------------------------------------------------------------
def test_close_expires_what_did_not_arrive_and_runs_what_did() -> None:
    # Given three declared files, two uploaded
    world = World(3)
    world.upload("f00001", "f00003")
    # When the client closes the batch
    closed = close_batch(
        world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
    )
    # Then the missing file is upload_expired (not retryable), and one run starts with the other two
    assert world.status("f00002") is FileStatus.UPLOAD_EXPIRED
    assert world.repo.files[("acme", BATCH_ID, "f00002")].error.retryable is False  # type: ignore[union-attr]
    assert closed.status is BatchStatus.PROCESSING and closed.run_files == 2
    key = manifest_key("acme", BATCH_ID, "-closed")
    assert world.workflow.started[BATCH_ID]["manifest_key"] == key
    assert world.storage.documents[key] == [{"file_id": "f00001"}, {"file_id": "f00003"}]
    assert world.counts() == {FileStatus.UPLOADED: 2, FileStatus.UPLOAD_EXPIRED: 1}
    # And an upload that lands afterwards changes nothing
    world.upload("f00002")
    assert world.status("f00002") is FileStatus.UPLOAD_EXPIRED
    assert world.counts() == {FileStatus.UPLOADED: 2, FileStatus.UPLOAD_EXPIRED: 1}


def test_a_batch_closed_with_nothing_uploaded_is_expired_and_gives_its_slot_back() -> None:
    world = World(2)
    world.repo.open_batches["acme"] = 1
    closed = close_batch(
        world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
    )
    assert closed.status is BatchStatus.EXPIRED and closed.finished_at == NOW
    assert world.counts() == {FileStatus.UPLOAD_EXPIRED: 2}
    assert world.workflow.started == {} and world.repo.open_batches["acme"] == 0
    # And its end is announced
    assert [e["detail_type"] for e in world.events.events] == ["Batch Expired"]


def test_only_a_batch_awaiting_upload_can_be_closed() -> None:
    world = World(1)
    world.upload("f00001")  # the last file starts the run
    with pytest.raises(ConflictError) as raised:
        close_batch(
            world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
        )
    assert raised.value.code == "batch_not_open"


def test_the_sweep_closes_a_batch_once_its_upload_window_has_ended() -> None:
    # Given a batch with one of two files uploaded; its window ends when the URLs expire plus grace
    world = World(2)
    world.upload("f00001")
    deadline = NOW + timedelta(seconds=600 + 60 + 1)
    assert world.batch().due_at == deadline
    # When the sweep runs before the deadline, nothing happens; after it, the batch is closed
    assert (
        sweep(
            world.repo,
            world.storage,
            world.workflow,
            world.events,
            provider="local",
            now=deadline - timedelta(seconds=1),
        )
        == {}
    )
    outcomes = sweep(world.repo, world.storage, world.workflow, world.events, provider="local", now=deadline)
    assert outcomes == {BATCH_ID: "processing"}
    assert world.status("f00002") is FileStatus.UPLOAD_EXPIRED
    # And it is no longer due: a later sweep leaves it alone
    assert (
        sweep(
            world.repo,
            world.storage,
            world.workflow,
            world.events,
            provider="local",
            now=deadline + timedelta(hours=1),
        )
        == {}
    )


def test_fresh_upload_urls_move_the_end_of_the_window_later() -> None:
    world = World(2)
    later = NOW + timedelta(minutes=5)
    list_uploads(
        world.repo,
        world.storage,
        ACME,
        BATCH_ID,
        PageQuery(),
        cursors=CursorSigner(StaticCursorKeys()),
        limits=LIMITS,
        now=later,
    )
    assert world.batch().due_at == LIMITS.upload_deadline(later)


# -- cancel -------------------------------------------------------------------------------------
def test_cancelling_a_batch_awaiting_upload_cancels_it_at_once() -> None:
    world = World(3)
    world.upload("f00001")
    cancelled = cancel_batch(
        world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
    )
    assert cancelled.status is BatchStatus.CANCELLED
    assert world.counts() == {FileStatus.CANCELLED: 3}
    # And a late upload, or a second cancel, changes nothing
    world.upload("f00002")
    again = cancel_batch(
        world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
    )
    assert again.status is BatchStatus.CANCELLED and world.counts() == {FileStatus.CANCELLED: 3}
    # And the end was announced once, as cancelled
    assert [e["event_id"] for e in world.events.events] == [f"{BATCH_ID}:0:cancelled"]


def test_cancelling_a_running_batch_stops_its_execution_and_keeps_results_already_recorded() -> None:
    # Given a running batch: one file completed, one processing, one waiting its turn
    world = World(3)
    world.upload("f00001", "f00002", "f00003")
    world.run(("f00001", FileStatus.COMPLETED, False))
    world.repo.move_file(
        "acme", BATCH_ID, "f00002", expected=FileStatus.UPLOADED, to=FileStatus.PROCESSING, at=NOW
    )
    # When it is cancelled
    cancelled = cancel_batch(
        world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
    )
    # Then the execution was stopped, unfinished files are cancelled, the completed one stays
    assert world.workflow.stopped == [BATCH_ID]
    assert cancelled.status is BatchStatus.CANCELLED
    assert world.counts() == {FileStatus.COMPLETED: 1, FileStatus.CANCELLED: 2}
    # And the processing file's result landing afterwards changes nothing, nor does finalize
    world.repo.move_file(
        "acme", BATCH_ID, "f00002", expected=FileStatus.PROCESSING, to=FileStatus.COMPLETED, at=NOW
    )
    world.finish()
    assert world.batch().status is BatchStatus.CANCELLED
    assert world.counts() == {FileStatus.COMPLETED: 1, FileStatus.CANCELLED: 2}


def test_an_ended_batch_cannot_be_cancelled() -> None:
    world = World(1)
    world.upload("f00001")
    world.run(("f00001", FileStatus.COMPLETED, False))
    world.finish()
    with pytest.raises(ConflictError) as raised:
        cancel_batch(
            world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
        )
    assert raised.value.code == "batch_ended"


def test_a_cancel_left_half_done_is_carried_out_by_the_sweep() -> None:
    # Given a cancel whose first write happened, then the function died
    world = World(2)
    world.upload("f00001")
    assert world.repo.begin_cancel("acme", BATCH_ID, at=NOW, due_at=NOW + timedelta(minutes=2))
    # When the sweep comes by after the watchdog time
    outcomes = sweep(
        world.repo,
        world.storage,
        world.workflow,
        world.events,
        provider="local",
        now=NOW + timedelta(minutes=2),
    )
    # Then the cancel is finished
    assert outcomes == {BATCH_ID: "cancelled"}
    assert world.counts() == {FileStatus.CANCELLED: 2}


# -- retry --------------------------------------------------------------------------------------
def ended_with_failures() -> World:
    world = World(4)
    world.upload("f00001", "f00002", "f00003", "f00004")
    world.run(
        ("f00001", FileStatus.COMPLETED, False),
        ("f00002", FileStatus.FAILED, True),
        ("f00003", FileStatus.FAILED, False),
        ("f00004", FileStatus.FAILED, True),
    )
    world.finish()
    assert world.batch().status is BatchStatus.COMPLETED_WITH_ERRORS
    return world


def test_retry_reruns_the_retryable_failures_in_a_new_execution_and_counts_move_exactly() -> None:
    # Given an ended batch with two retryable failures and one that is not
    world = ended_with_failures()
    world.repo.open_batches["acme"] = 0
    # When it is retried
    retry = retry_batch(
        world.repo,
        world.storage,
        world.workflow,
        world.events,
        world.batch(),
        RetryRequest(),
        now=NOW,
        provider="local",
    )
    # Then a new execution <batch>-r1 runs just those two, from a manifest of their own
    assert (retry.retry, retry.execution_name, retry.file_ids) == (1, f"{BATCH_ID}-r1", ["f00002", "f00004"])
    started = world.workflow.started[f"{BATCH_ID}-r1"]
    assert world.storage.documents[started["manifest_key"]] == [{"file_id": "f00002"}, {"file_id": "f00004"}]
    assert world.batch().status is BatchStatus.PROCESSING and world.repo.open_batches["acme"] == 1
    # And when the run succeeds for one and fails again for the other, counts move exactly
    world.run(("f00002", FileStatus.COMPLETED, False), ("f00004", FileStatus.FAILED, True))
    # (a late finalize of the first run changes nothing)
    world.finish(retry=0)
    assert world.batch().status is BatchStatus.PROCESSING
    world.finish(retry=1)
    assert world.batch().status is BatchStatus.COMPLETED_WITH_ERRORS and world.batch().retries == 1
    assert world.counts() == {FileStatus.COMPLETED: 2, FileStatus.FAILED: 2}
    assert world.repo.open_batches["acme"] == 0
    # And the next retry is r2
    again = retry_batch(
        world.repo,
        world.storage,
        world.workflow,
        world.events,
        world.batch(),
        RetryRequest(),
        now=NOW,
        provider="local",
    )
    assert again.execution_name == f"{BATCH_ID}-r2" and again.file_ids == ["f00004"]


def test_a_duplicate_retry_call_starts_nothing_more() -> None:
    world = ended_with_failures()
    stale = world.batch()
    retry_batch(
        world.repo,
        world.storage,
        world.workflow,
        world.events,
        stale,
        RetryRequest(),
        now=NOW,
        provider="local",
    )
    # The same call again, racing with the first (it read the batch before the first claimed it)
    with pytest.raises(ConflictError) as raised:
        retry_batch(
            world.repo,
            world.storage,
            world.workflow,
            world.events,
            stale,
            RetryRequest(),
            now=NOW,
            provider="local",
        )
    assert raised.value.code == "retry_in_progress"
    # Or after it: the batch is running
    with pytest.raises(ConflictError) as raised:
        retry_batch(
            world.repo,
            world.storage,
            world.workflow,
            world.events,
            world.batch(),
            RetryRequest(),
            now=NOW,
            provider="local",
        )
    assert raised.value.code == "batch_not_ended"
    assert list(world.workflow.started) == [BATCH_ID, f"{BATCH_ID}-r1"]


def test_listed_files_must_each_have_failed_retryably() -> None:
    world = ended_with_failures()
    with pytest.raises(InvalidRequestError) as raised:
        retry_batch(
            world.repo,
            world.storage,
            world.workflow,
            world.events,
            world.batch(),
            RetryRequest(file_ids=["f00002", "f00003", "f00001"]),
            now=NOW,
            provider="local",
        )
    assert raised.value.code == "file_not_retryable" and "f00003, f00001" in raised.value.message
    retry = retry_batch(
        world.repo,
        world.storage,
        world.workflow,
        world.events,
        world.batch(),
        RetryRequest(file_ids=["f00004"]),
        now=NOW,
        provider="local",
    )
    assert retry.file_ids == ["f00004"]


def test_nothing_retryable_is_a_conflict() -> None:
    world = World(1)
    world.upload("f00001")
    world.run(("f00001", FileStatus.FAILED, False))
    world.finish()
    with pytest.raises(ConflictError) as raised:
        retry_batch(
            world.repo,
            world.storage,
            world.workflow,
            world.events,
            world.batch(),
            RetryRequest(),
            now=NOW,
            provider="local",
        )
    assert raised.value.code == "nothing_to_retry"


def test_a_retry_whose_execution_cannot_start_ends_the_batch_as_it_was() -> None:
    world = ended_with_failures()
    world.repo.open_batches["acme"] = 0

    def refuse(name: str, payload: dict[str, object]) -> bool:
        raise RuntimeError("Step Functions unavailable")

    world.workflow.start = refuse  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        retry_batch(
            world.repo,
            world.storage,
            world.workflow,
            world.events,
            world.batch(),
            RetryRequest(),
            now=NOW,
            provider="local",
        )
    assert world.batch().status is BatchStatus.COMPLETED_WITH_ERRORS
    assert world.repo.open_batches["acme"] == 0


# -- every end is announced at least once ---------------------------------------------------------
def _close(world: World) -> None:
    close_batch(
        world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
    )


def _cancel(world: World) -> None:
    cancel_batch(
        world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
    )


def _finalize(world: World) -> None:
    world.upload("f00001", "f00002")
    world.run(("f00001", FileStatus.COMPLETED, False), ("f00002", FileStatus.FAILED, True))
    world.finish()


def _expire(world: World) -> None:
    # The upload window ends with nothing uploaded: the sweep ends the batch expired. Its failure to
    # announce is the sweep's own trouble with that batch (logged), not an exception.
    outcomes = sweep(
        world.repo,
        world.storage,
        world.workflow,
        world.events,
        provider="local",
        now=LIMITS.upload_deadline(NOW),
    )
    assert outcomes == {BATCH_ID: "error"}


ENDS = {
    "close": (_close, BatchStatus.EXPIRED),
    "cancel": (_cancel, BatchStatus.CANCELLED),
    "finalize": (_finalize, BatchStatus.COMPLETED_WITH_ERRORS),
    "expiry": (_expire, BatchStatus.EXPIRED),
}


@pytest.mark.parametrize("path", list(ENDS))
def test_an_end_whose_announcement_failed_after_the_status_write_is_announced_by_the_sweep(path: str) -> None:
    # Given an end whose status is written, then the event bus fails
    world = World(2)
    end, status = ENDS[path]
    world.events.fail_next = 1
    ended_at = LIMITS.upload_deadline(NOW) if path == "expiry" else NOW
    if path == "expiry":
        end(world)
    else:
        # The step's caller sees the failure (a 503, a Step Functions retry)
        with pytest.raises(StorageUnavailableError):
            end(world)
    # Then the batch has ended, unannounced, and is due a watchdog time later
    assert world.batch().status is status and world.events.events == []
    assert world.batch().end_unannounced and world.batch().due_at == ended_at + timedelta(minutes=2)
    # When the sweep runs before the watchdog time, it leaves the end to the step that is still on it
    sweep(world.repo, world.storage, world.workflow, world.events, provider="local", now=ended_at)
    assert world.events.events == []
    # And when it runs after it, the end is announced, once, under the end's event id
    later = ended_at + timedelta(minutes=2)
    outcomes = sweep(world.repo, world.storage, world.workflow, world.events, provider="local", now=later)
    assert outcomes == {BATCH_ID: status.value}
    assert [e["event_id"] for e in world.events.events] == [f"{BATCH_ID}:0:{status.value}"]
    assert world.batch().announced_at == later and world.batch().due_at is None
    # And a later sweep has nothing left to do for it
    assert sweep(world.repo, world.storage, world.workflow, world.events, provider="local", now=later) == {}
    assert len(world.events.events) == 1


def test_an_announced_end_is_not_due() -> None:
    # Given a batch closed with nothing uploaded, its end announced at once
    world = World(1)
    _close(world)
    # Then it is off the sweep's list, and its announcement is recorded
    assert world.batch().due_at is None and world.batch().announced_at == NOW
    assert world.repo.list_due(now=NOW + timedelta(days=1), limit=10) == []


@pytest.mark.parametrize("repeat", ["close", "cancel"])
def test_a_repeated_close_or_cancel_announces_an_end_that_was_not(repeat: str) -> None:
    # Given a cancelled batch whose announcement failed
    world = World(1)
    world.events.fail_next = 1
    with pytest.raises(StorageUnavailableError):
        _cancel(world)
    assert world.events.events == []
    # When the client repeats the cancel (or tries a close)
    if repeat == "cancel":
        again = cancel_batch(
            world.repo, world.storage, world.workflow, world.events, world.batch(), now=NOW, provider="local"
        )
        assert again.status is BatchStatus.CANCELLED
    else:
        with pytest.raises(ConflictError) as raised:
            _close(world)
        assert raised.value.code == "batch_not_open"
    # Then the end is announced now, and is no longer due
    assert [e["event_id"] for e in world.events.events] == [f"{BATCH_ID}:0:cancelled"]
    assert world.batch().due_at is None
    # And repeating it again announces nothing more
    _cancel(world)
    assert len(world.events.events) == 1


def test_a_retry_announces_an_end_not_yet_announced_before_its_run_starts() -> None:
    # Given an ended batch whose end was written but whose announcement failed
    world = World(4)
    world.upload("f00001", "f00002", "f00003", "f00004")
    world.run(*((f"f0000{n}", FileStatus.FAILED, True) for n in range(1, 5)))
    world.events.fail_next = 1
    with pytest.raises(StorageUnavailableError):
        world.finish()
    # When the client retries it (it saw it ended)
    retry = retry_batch(
        world.repo,
        world.storage,
        world.workflow,
        world.events,
        world.batch(),
        RetryRequest(),
        now=NOW,
        provider="local",
    )
    # Then the first run's end is announced before the retry's run, which will end as another event
    assert [e["event_id"] for e in world.events.events] == [f"{BATCH_ID}:0:failed"]
    assert retry.retry == 1 and world.batch().status is BatchStatus.PROCESSING
    # And the retry's end is owed, and announced, as its own
    world.run(*((f"f0000{n}", FileStatus.COMPLETED, False) for n in range(1, 5)))
    world.finish(retry=1)
    assert [e["event_id"] for e in world.events.events][1:] == [f"{BATCH_ID}:1:completed"]
    assert world.batch().due_at is None
