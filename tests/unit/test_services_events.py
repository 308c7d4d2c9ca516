"""A batch's end on the event bus (service level, with fakes): one event per terminal transition,
its detail-type, its detail (the status body) and its deterministic id; announced again, not lost,
when finalize is retried."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from filebatch.errors import ConflictError, StorageUnavailableError
from filebatch.models.api import BatchStatusResponse, CreateBatchRequest, FileSpec
from filebatch.models.domain import BatchStatus, FileStatus, Tenant
from filebatch.models.events import DETAIL_TYPES, EVENT_SOURCE, BatchEndedDetail, batch_event_id
from filebatch.services.batches import UploadLimits, create_batch, get_batch_status
from filebatch.services.cursors import CursorSigner
from filebatch.services.events import announce_batch_ended
from filebatch.services.processing import finalize_batch
from tests.unit.fakes import InMemoryRepository, InMemoryStorage, RecordingEvents, StaticCursorKeys

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
BATCH_ID = "b-0123456789abcdef0123456789abcdef"
ACME = Tenant(tenant_id="acme")


def new_batch(files: int = 2) -> InMemoryRepository:
    repo = InMemoryRepository()
    create_batch(
        repo,
        InMemoryStorage(),
        ACME,
        CreateBatchRequest(
            files=[FileSpec(filename=f"{i}.png", size=1, content_type="image/png") for i in range(files)]
        ),
        limits=UploadLimits(max_files=10, max_file_bytes=100, url_ttl_seconds=900),
        retention_days=30,
        cursors=CursorSigner(StaticCursorKeys()),
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    return repo


def test_every_terminal_status_has_a_detail_type_and_the_source_is_filebatch() -> None:
    terminal = {s.value for s in BatchStatus if s.is_terminal}
    assert terminal <= set(DETAIL_TYPES)
    assert DETAIL_TYPES["completed_with_errors"] == "Batch Completed With Errors"
    assert EVENT_SOURCE == "filebatch"
    # The id is deterministic and carries no "." (Standard Webhooks: the signed id may not)
    assert batch_event_id(BATCH_ID, 0, "completed") == f"{BATCH_ID}:0:completed"
    assert "." not in batch_event_id(BATCH_ID, 3, "completed_with_errors")


def test_finalize_announces_the_end_with_the_status_body_as_get_answers_it() -> None:
    # Given a batch whose run started but whose files never ran
    repo, events = new_batch(), RecordingEvents()
    repo.start_run("acme", BATCH_ID, files=2, at=NOW)
    # When the workflow finalizes it
    finalize_batch(
        repo, "acme", BATCH_ID, storage=InMemoryStorage(), now=NOW, events=events, provider="bedrock"
    )
    # Then one event says it failed, with the status body GET gives, the tenant and the event id
    [event] = events.events
    assert event["detail_type"] == "Batch Failed"
    assert event["event_id"] == f"{BATCH_ID}:0:failed"
    detail = json.loads(event["detail"])
    assert detail["tenant_id"] == "acme" and detail["event_id"] == event["event_id"]
    status = get_batch_status(repo, ACME, BATCH_ID, provider="bedrock", now=NOW)
    assert BatchEndedDetail.model_validate(detail).status_body() == status
    assert (
        BatchStatusResponse.model_validate(
            {k: v for k, v in detail.items() if k not in ("tenant_id", "event_id")}
        )
        == status
    )
    assert detail["description"]["provider"] == "bedrock" and detail["is_terminal"] is True


def test_a_retried_finalize_announces_again_with_the_same_id_even_when_it_did_not_end_the_batch() -> None:
    # Given a finalize that ended the batch but could not put the event (EventBridge failed)
    repo, events = new_batch(), RecordingEvents()
    repo.start_run("acme", BATCH_ID, files=2, at=NOW)
    events.fail_next = 1
    with pytest.raises(StorageUnavailableError):
        finalize_batch(
            repo, "acme", BATCH_ID, storage=InMemoryStorage(), now=NOW, events=events, provider="local"
        )
    assert repo.batches[("acme", BATCH_ID)].status is BatchStatus.FAILED and events.events == []
    # When Step Functions retries it, and once more (a duplicate run)
    finalize_batch(
        repo, "acme", BATCH_ID, storage=InMemoryStorage(), now=NOW, events=events, provider="local"
    )
    finalize_batch(
        repo, "acme", BATCH_ID, storage=InMemoryStorage(), now=NOW, events=events, provider="local"
    )
    # Then the end was announced by the retry, and once announced not again by the duplicate run
    assert [e["event_id"] for e in events.events] == [f"{BATCH_ID}:0:failed"]
    assert {e["detail_type"] for e in events.events} == {"Batch Failed"}
    # And the batch is announced, so no longer due for the sweep
    batch = repo.batches[("acme", BATCH_ID)]
    assert batch.announced_at == NOW and batch.due_at is None


@pytest.mark.parametrize(
    ("completed", "failed", "detail_type"),
    [(2, 0, "Batch Completed"), (1, 1, "Batch Completed With Errors"), (0, 2, "Batch Failed")],
)
def test_the_detail_type_names_how_the_batch_ended(completed: int, failed: int, detail_type: str) -> None:
    repo, events = new_batch(), RecordingEvents()
    batch = repo.batches[("acme", BATCH_ID)]
    batch.status = BatchStatus.PROCESSING
    # (every file already has its result: finalize sweeps none)
    outcomes = [FileStatus.COMPLETED] * completed + [FileStatus.FAILED] * failed
    batch.counts = {s: outcomes.count(s) for s in set(outcomes)}
    for file, outcome in zip(repo.files.values(), outcomes, strict=True):
        file.status = outcome
    finalize_batch(
        repo, "acme", BATCH_ID, storage=InMemoryStorage(), now=NOW, events=events, provider="local"
    )
    assert [e["detail_type"] for e in events.events] == [detail_type]


def test_the_event_names_the_run_that_ended_and_a_batch_still_running_is_not_announced() -> None:
    repo, events = new_batch(), RecordingEvents()
    with pytest.raises(ConflictError):
        announce_batch_ended(repo, events, "acme", BATCH_ID, provider="local", now=NOW)
    assert events.events == []
    repo.batches[("acme", BATCH_ID)].retries = 2
    repo.finish_batch(
        "acme",
        BATCH_ID,
        status=BatchStatus.FAILED,
        expected=frozenset({BatchStatus.AWAITING_UPLOAD}),
        at=NOW,
        due_at=None,
    )
    detail = announce_batch_ended(repo, events, "acme", BATCH_ID, provider="local", now=NOW)
    assert detail.event_id == events.events[0]["event_id"] == f"{BATCH_ID}:2:failed"
