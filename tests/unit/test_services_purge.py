"""Deleting a batch and purging it, and the background jobs' dispatch (service level, with fakes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from filebatch.errors import ConflictError, NotFoundError, StorageUnavailableError
from filebatch.models.api import CreateBatchRequest, FileSpec, PageQuery
from filebatch.models.domain import (
    BatchStatus,
    Tenant,
    batch_object_prefixes,
    export_key,
    manifest_key,
    upload_key,
    workflow_results_prefix,
)
from filebatch.models.workflow import BatchJob, PurgeBatchJob
from filebatch.services.batches import UploadLimits, create_batch, get_batch_status, list_results
from filebatch.services.cursors import CursorSigner
from filebatch.services.exports import get_export
from filebatch.services.jobs import run_job
from filebatch.services.purge import delete_batch, purge_batch
from tests.unit.fakes import InMemoryRepository, InMemoryStorage, RecordingJobQueue, StaticCursorKeys

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
ACME = Tenant(tenant_id="acme")
BATCH_ID = "b-" + "1" * 32
OTHER_ID = "b-" + "2" * 32
CURSORS = CursorSigner(StaticCursorKeys())


def make(repo: InMemoryRepository, storage: InMemoryStorage, batch_id: str = BATCH_ID, files: int = 2) -> str:
    create_batch(
        repo,
        storage,
        ACME,
        CreateBatchRequest(
            files=[FileSpec(filename=f"{i}.jpg", size=1, content_type="image/jpeg") for i in range(files)]
        ),
        limits=UploadLimits(max_files=10, max_file_bytes=10, url_ttl_seconds=60),
        retention_days=30,
        cursors=CURSORS,
        now=NOW,
        make_batch_id=lambda: batch_id,
    )
    return batch_id


def ended(repo: InMemoryRepository, batch_id: str = BATCH_ID) -> None:
    assert repo.finish_batch(
        "acme",
        batch_id,
        status=BatchStatus.COMPLETED,
        expected=frozenset({BatchStatus.AWAITING_UPLOAD}),
        at=NOW,
        due_at=None,
    )


def with_objects(storage: InMemoryStorage, batch_id: str) -> None:
    """What a batch leaves in the bucket: two versions of an upload, the workflow's results, the export."""
    storage.put(upload_key("acme", batch_id, "f00001"), b"first")
    storage.put(upload_key("acme", batch_id, "f00001"), b"second")
    storage.put(upload_key("acme", batch_id, "f00002"), b"x")
    storage.put(f"{workflow_results_prefix('acme', batch_id)}run-1/manifest.json", b"{}")
    storage.put(export_key("acme", batch_id), b"{}\n")


def test_deleting_an_ended_batch_hides_it_at_once_and_queues_its_purge() -> None:
    # Given an ended batch
    repo, storage, jobs = InMemoryRepository(), InMemoryStorage(), RecordingJobQueue()
    make(repo, storage)
    ended(repo)
    # When it is deleted
    answer = delete_batch(repo, jobs, ACME, BATCH_ID, now=NOW)
    # Then the answer says it is being deleted, and one purge job is queued for it
    assert answer.model_dump() == {"batch_id": BATCH_ID, "status": "deleting"}
    assert jobs.jobs == [PurgeBatchJob(tenant_id="acme", batch_id=BATCH_ID)]
    # And every route answers 404 from now on, while the purge has not run yet
    assert repo.get_batch("acme", BATCH_ID) is None
    for read in (
        lambda: get_batch_status(repo, ACME, BATCH_ID, provider="local", now=NOW),
        lambda: list_results(repo, ACME, BATCH_ID, PageQuery(), cursors=CURSORS),
        lambda: get_export(repo, storage, ACME, BATCH_ID, ttl_seconds=60, now=NOW),
        lambda: delete_batch(repo, jobs, ACME, BATCH_ID, now=NOW),
    ):
        with pytest.raises(NotFoundError) as raised:
            read()
        assert raised.value.code == "batch_not_found"
    assert len(jobs.jobs) == 1
    # But the purge still finds it
    deleted = repo.get_batch("acme", BATCH_ID, include_deleted=True)
    assert deleted is not None and deleted.deleted_at == NOW


def test_a_batch_that_has_not_ended_is_not_deleted() -> None:
    # Given a batch still awaiting its uploads
    repo, storage, jobs = InMemoryRepository(), InMemoryStorage(), RecordingJobQueue()
    make(repo, storage)
    # When its deletion is asked for
    with pytest.raises(ConflictError) as raised:
        delete_batch(repo, jobs, ACME, BATCH_ID, now=NOW)
    # Then it is refused (cancel it first), nothing is marked and no job is queued
    assert raised.value.code == "batch_not_ended"
    assert "cancel" in raised.value.message
    assert repo.get_batch("acme", BATCH_ID) is not None and jobs.jobs == []


@pytest.mark.parametrize("batch_id", [OTHER_ID, "not-a-batch", "b-" + "1" * 31])
def test_deleting_an_unknown_batch_is_a_404(batch_id: str) -> None:
    repo, storage, jobs = InMemoryRepository(), InMemoryStorage(), RecordingJobQueue()
    make(repo, storage)
    ended(repo)
    with pytest.raises(NotFoundError):
        delete_batch(repo, jobs, ACME, batch_id, now=NOW)
    # Another tenant's batch is unknown too
    with pytest.raises(NotFoundError):
        delete_batch(repo, jobs, Tenant(tenant_id="other"), BATCH_ID, now=NOW)
    assert jobs.jobs == []


def test_a_delete_whose_job_cannot_be_queued_is_undone_so_that_a_retry_can_queue_it() -> None:
    # Given an ended batch and a queue that is unreachable
    repo, storage, jobs = InMemoryRepository(), InMemoryStorage(), RecordingJobQueue()
    make(repo, storage)
    ended(repo)
    jobs.fail = True
    # When it is deleted, the error comes back (a 503)
    with pytest.raises(StorageUnavailableError):
        delete_batch(repo, jobs, ACME, BATCH_ID, now=NOW)
    # Then the batch is still there, not deleted
    batch = repo.get_batch("acme", BATCH_ID)
    assert batch is not None and batch.deleted_at is None
    # And the client's retry deletes it and queues its purge
    jobs.fail = False
    delete_batch(repo, jobs, ACME, BATCH_ID, now=NOW + timedelta(seconds=1))
    assert len(jobs.jobs) == 1 and repo.get_batch("acme", BATCH_ID) is None


def test_the_purge_removes_every_object_version_and_item_of_the_batch_and_nothing_else() -> None:
    # Given two batches with objects, one of them deleted
    repo, storage, jobs = InMemoryRepository(), InMemoryStorage(), RecordingJobQueue()
    for batch_id in (BATCH_ID, OTHER_ID):
        make(repo, storage, batch_id)
        ended(repo, batch_id)
        with_objects(storage, batch_id)
    delete_batch(repo, jobs, ACME, BATCH_ID, now=NOW)
    # When its purge job runs
    [job] = jobs.jobs
    outcome = run_job(job, repo=repo, storage=storage)
    # Then its uploads (every version), manifest, workflow results and export are gone ...
    assert outcome.outcome == "purged" and outcome.action == "purge"
    assert outcome.counts == {"objects": 6, "items": 3}
    assert not any(
        key.startswith(tuple(batch_object_prefixes("acme", BATCH_ID))) for key in storage.all_keys()
    )
    assert manifest_key("acme", BATCH_ID) not in storage.all_keys()
    # ... and its items, batch included
    assert repo.get_batch("acme", BATCH_ID, include_deleted=True) is None
    assert not any(key[1] == BATCH_ID for key in repo.files)
    # And the other batch keeps everything
    assert {manifest_key("acme", OTHER_ID), export_key("acme", OTHER_ID)} <= storage.all_keys()
    assert repo.get_batch("acme", OTHER_ID) is not None
    assert len([key for key in repo.files if key[1] == OTHER_ID]) == 2


def test_a_redelivered_purge_finds_nothing_left_and_succeeds() -> None:
    repo, storage, jobs = InMemoryRepository(), InMemoryStorage(), RecordingJobQueue()
    make(repo, storage)
    ended(repo)
    delete_batch(repo, jobs, ACME, BATCH_ID, now=NOW)
    run_job(jobs.jobs[0], repo=repo, storage=storage)
    again = run_job(jobs.jobs[0], repo=repo, storage=storage)
    assert (again.outcome, again.counts) == ("gone", {"objects": 0, "items": 0})


class FailingOnce(InMemoryStorage):
    """Deletes under the first prefix, then fails once (a throttled S3) before the next."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def delete_prefix(self, prefix: str) -> int:
        self.calls += 1
        if self.calls == 2:
            raise StorageUnavailableError("S3 delete failed: SlowDown")
        return super().delete_prefix(prefix)


def test_a_purge_cut_short_resumes_on_redelivery() -> None:
    # Given a deleted batch whose first purge fails half-way through its objects
    repo, storage, jobs = InMemoryRepository(), FailingOnce(), RecordingJobQueue()
    make(repo, storage)
    ended(repo)
    with_objects(storage, BATCH_ID)
    delete_batch(repo, jobs, ACME, BATCH_ID, now=NOW)
    with pytest.raises(StorageUnavailableError):
        run_job(jobs.jobs[0], repo=repo, storage=storage)
    # Then the batch item is still there (the work is not done), the uploads already gone
    assert repo.get_batch("acme", BATCH_ID, include_deleted=True) is not None
    assert not any(k.startswith(upload_key("acme", BATCH_ID, "")) for k in storage.all_keys())
    # When the message comes back, the purge finishes
    outcome = run_job(jobs.jobs[0], repo=repo, storage=storage)
    assert outcome.outcome == "purged"
    assert storage.all_keys() == set() and repo.batches == {} and repo.files == {}


def test_a_batch_that_is_not_deleted_is_never_purged() -> None:
    # Given an ended batch that was never deleted (a stray or forged job)
    repo, storage = InMemoryRepository(), InMemoryStorage()
    make(repo, storage)
    ended(repo)
    with_objects(storage, BATCH_ID)
    keys = storage.all_keys()
    # When a purge job names it
    outcome = purge_batch(repo, storage, "acme", BATCH_ID)
    # Then it is refused and nothing is removed
    assert outcome.outcome == "refused"
    assert storage.all_keys() == keys and repo.get_batch("acme", BATCH_ID) is not None


def test_job_messages_are_told_apart_by_their_action() -> None:
    jobs = TypeAdapter(BatchJob)
    job = jobs.validate_json(f'{{"action": "purge", "tenant_id": "acme", "batch_id": "{BATCH_ID}"}}')
    assert job == PurgeBatchJob(tenant_id="acme", batch_id=BATCH_ID)
    assert jobs.validate_json(job.model_dump_json()) == job
    for bad in (
        f'{{"action": "explode", "tenant_id": "acme", "batch_id": "{BATCH_ID}"}}',
        '{"action": "purge", "tenant_id": "acme", "batch_id": "../../etc"}',
        f'{{"action": "purge", "tenant_id": "acme", "batch_id": "{BATCH_ID}", "extra": 1}}',
    ):
        with pytest.raises(ValidationError):
            jobs.validate_json(bad)
