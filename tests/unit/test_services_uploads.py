"""Upload events: exactly-once counting, start when complete, at-least-once and out-of-order safety."""

from __future__ import annotations

from datetime import UTC, datetime

from filebatch.models.api import CreateBatchRequest, FileSpec
from filebatch.models.domain import BatchStatus, Tenant, manifest_key, upload_key
from filebatch.services.batches import UploadLimits, create_batch
from filebatch.services.cursors import CursorSigner
from filebatch.services.uploads import UploadOutcome, record_upload
from tests.unit.fakes import InMemoryRepository, InMemoryStorage, RecordingStarter, StaticCursorKeys

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
BATCH_ID = "b-" + "a" * 32


def batch_of(n: int) -> tuple[InMemoryRepository, RecordingStarter]:
    repo = InMemoryRepository()
    create_batch(
        repo,
        InMemoryStorage(),
        Tenant(tenant_id="acme"),
        CreateBatchRequest(
            files=[FileSpec(filename=f"{i}.png", size=5, content_type="image/png") for i in range(n)]
        ),
        limits=UploadLimits(max_files=100, max_file_bytes=100, url_ttl_seconds=60),
        retention_days=30,
        cursors=CursorSigner(StaticCursorKeys()),
        now=NOW,
        make_batch_id=lambda: BATCH_ID,
    )
    return repo, RecordingStarter()


def key(file_id: str) -> str:
    return upload_key("acme", BATCH_ID, file_id)


def test_duplicate_events_count_once() -> None:
    # Given a batch of two files
    repo, starter = batch_of(2)
    # When the same upload event arrives three times
    outcomes = [
        record_upload(repo, starter, key=key("f00001"), size=5, version_id=None, now=NOW) for _ in range(3)
    ]
    # Then it is counted once and the workflow has not started
    assert outcomes == [UploadOutcome.RECORDED, UploadOutcome.DUPLICATE, UploadOutcome.DUPLICATE]
    batch = repo.get_batch("acme", BATCH_ID)
    assert batch is not None and batch.arrived == 1 and batch.status is BatchStatus.AWAITING_UPLOAD
    assert starter.started == {}


def test_the_first_recorded_version_is_the_one_the_workflow_will_read() -> None:
    # Given a batch of two files
    repo, starter = batch_of(2)
    # When the first file's event names version "v1", then another event names "v2" for the same key
    record_upload(repo, starter, key=key("f00001"), size=5, version_id="v1", now=NOW)
    later = record_upload(repo, starter, key=key("f00001"), size=5, version_id="v2", now=NOW)
    # Then the second changes nothing: the recorded version is the first
    assert later is UploadOutcome.DUPLICATE
    file = repo.get_file("acme", BATCH_ID, "f00001")
    assert file is not None and file.uploaded_version_id == "v1"


def test_last_file_starts_one_execution_named_after_the_batch_in_any_order() -> None:
    # Given a batch of three files
    repo, starter = batch_of(3)
    # When the events arrive out of order, with a duplicate after the start
    record_upload(repo, starter, key=key("f00003"), size=5, version_id=None, now=NOW)
    record_upload(repo, starter, key=key("f00001"), size=5, version_id=None, now=NOW)
    last = record_upload(repo, starter, key=key("f00002"), size=5, version_id=None, now=NOW)
    again = record_upload(repo, starter, key=key("f00002"), size=5, version_id=None, now=NOW)
    # Then exactly one execution started, named after the batch, pointing at the manifest
    assert last is UploadOutcome.STARTED
    assert again is UploadOutcome.DUPLICATE
    assert starter.started == {
        BATCH_ID: {
            "tenant_id": "acme",
            "batch_id": BATCH_ID,
            "manifest_key": manifest_key("acme", BATCH_ID),
            "retry": 0,
            # No instructions were given: the providers' defaults
            "instructions": {"prompt": None, "language": None, "detail": "standard"},
            # The batch does not skip duplicates (issue 10)
            "dedup_fingerprint": None,
        }
    }
    batch = repo.get_batch("acme", BATCH_ID)
    assert batch is not None and batch.status is BatchStatus.PROCESSING and batch.arrived == 3


def test_redelivery_after_a_failed_start_starts_the_workflow() -> None:
    # Given the last file was counted but the start crashed before it reached Step Functions
    repo, starter = batch_of(1)
    repo.mark_uploaded("acme", BATCH_ID, "f00001", size=5, version_id=None, at=NOW)
    # When SQS redelivers that event
    outcome = record_upload(repo, starter, key=key("f00001"), size=5, version_id=None, now=NOW)
    # Then the redelivery starts the execution
    assert outcome is UploadOutcome.STARTED
    assert list(starter.started) == [BATCH_ID]


def test_keys_that_are_not_uploads_or_unknown_files_are_ignored() -> None:
    # Given a batch of one file
    repo, starter = batch_of(1)
    # When events name a manifest, another batch, or a file id the batch does not have
    outcomes = [
        record_upload(repo, starter, key=manifest_key("acme", BATCH_ID), size=5, version_id=None, now=NOW),
        record_upload(
            repo, starter, key=upload_key("acme", "b-" + "b" * 32, "f00001"), size=5, version_id=None, now=NOW
        ),
        record_upload(repo, starter, key=key("f00009"), size=5, version_id=None, now=NOW),
    ]
    # Then nothing changes
    assert outcomes == [UploadOutcome.IGNORED] * 3
    batch = repo.get_batch("acme", BATCH_ID)
    assert batch is not None and batch.arrived == 0
