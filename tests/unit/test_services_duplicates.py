"""Skipping duplicates by content hash (issue 10), service level with fakes: the lookup at create, the
lifecycle of a batch with skipped files, the claim in the describe step, and the purge."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from filebatch.errors import DuplicateInProgressError, StorageUnavailableError
from filebatch.media.source import MediaSource
from filebatch.models.api import (
    CreateBatchRequest,
    CreateBatchResponse,
    DescriptionOptions,
    FileSpec,
    PageQuery,
)
from filebatch.models.domain import (
    DEFAULT_INSTRUCTIONS,
    Batch,
    BatchStatus,
    Description,
    DescriptionInstructions,
    DuplicateOf,
    FileFacts,
    FileStatus,
    ModelInvocation,
    Tenant,
    TokenUsage,
    export_key,
    manifest_key,
    upload_key,
)
from filebatch.models.workflow import DescribeFileInput, FailedFile, FileTask, StepFunctionsError
from filebatch.services.batches import DuplicateSettings, UploadLimits, create_batch, list_results
from filebatch.services.cursors import CursorSigner
from filebatch.services.duplicates import CLAIM_LEASE, fingerprint, provider_identity
from filebatch.services.lifecycle import close_batch, retry_batch, sweep
from filebatch.services.processing import (
    describe,
    finalize_batch,
    process_file,
    record_failure,
    record_success,
)
from filebatch.services.purge import purge_batch
from filebatch.services.uploads import record_upload
from tests.unit.fakes import (
    InMemoryRepository,
    InMemoryStorage,
    RecordingEvents,
    RecordingStarter,
    StaticCursorKeys,
)

NOW = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
ACME, GLOBEX = Tenant(tenant_id="acme"), Tenant(tenant_id="globex")
LIMITS = UploadLimits(max_files=100, max_file_bytes=10**6, url_ttl_seconds=900)
CURSORS = CursorSigner(StaticCursorKeys())
FINGERPRINT = fingerprint("local", DEFAULT_INSTRUCTIONS)


class CountingProvider:
    """Describes text by its length, as a hosted model would bill it; counts its calls."""

    name = "local"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def describe(
        self,
        media: MediaSource,
        facts: FileFacts,
        filename: str,
        instructions: DescriptionInstructions = DEFAULT_INSTRUCTIONS,
    ) -> Description:
        self.calls.append(filename)
        return Description(
            provider="local",
            text=f"{facts.size_bytes} bytes of text",
            invocation=ModelInvocation(
                model_id="m",
                usage=TokenUsage(input_tokens=10, output_tokens=5),
                latency_ms=1,
                stop_reason="end",
            ),
        )


def text(n: int) -> bytes:
    return f"file number {n}\n".encode()


class World:
    """One deployment: store, bucket, workflow, bus, provider; batches are created and run through the
    services the handlers call."""

    def __init__(self) -> None:
        self.repo, self.storage = InMemoryRepository(), InMemoryStorage()
        self.starter, self.events, self.provider = RecordingStarter(), RecordingEvents(), CountingProvider()
        self.ids = iter(f"b-{n:032x}" for n in range(1, 100))

    def create(
        self,
        contents: list[bytes],
        *,
        tenant: Tenant = ACME,
        skip: bool = True,
        declare: bool = True,
        description: DescriptionOptions | None = None,
        now: datetime = NOW,
    ) -> CreateBatchResponse:
        request = CreateBatchRequest(
            files=[
                FileSpec(
                    filename=f"note-{i}.txt",
                    size=len(content),
                    content_type="text/plain",
                    sha256=hashlib.sha256(content).hexdigest() if declare else None,
                )
                for i, content in enumerate(contents)
            ],
            skip_duplicates=skip,
            description=description,
        )
        return create_batch(
            self.repo,
            self.storage,
            tenant,
            request,
            limits=LIMITS,
            retention_days=30,
            cursors=CURSORS,
            now=now,
            make_batch_id=lambda: next(self.ids),
            duplicates=DuplicateSettings(provider="local", provider_identity="local", events=self.events),
        )

    def upload(self, created: CreateBatchResponse, contents: list[bytes], *, tenant: Tenant = ACME) -> None:
        for file, content in zip(created.files, contents, strict=True):
            if file.upload is None:
                continue
            key = upload_key(tenant.tenant_id, created.batch_id, file.file_id)
            version = self.storage.put(key, content)
            record_upload(self.repo, self.starter, key=key, size=len(content), version_id=version, now=NOW)

    def task(self, created: CreateBatchResponse, file_id: str, *, tenant: Tenant = ACME) -> FileTask:
        batch = self.repo.get_batch(tenant.tenant_id, created.batch_id)
        assert batch is not None
        return FileTask(
            tenant_id=tenant.tenant_id,
            batch_id=created.batch_id,
            file_id=file_id,
            dedup_fingerprint=batch.dedup_fingerprint,
        )

    def run(self, created: CreateBatchResponse, *, tenant: Tenant = ACME, now: datetime = NOW) -> Batch:
        """The workflow over the batch's manifest, one file after the other, then its finalize."""
        for item in self.storage.documents[manifest_key(tenant.tenant_id, created.batch_id)]:
            processed = process_file(
                self.repo, self.storage, self.task(created, item["file_id"], tenant=tenant), now=now
            )
            described = describe(
                self.storage, self.provider, DescribeFileInput(file=processed), repo=self.repo, now=now
            )
            record_success(self.repo, described, now=now)
        finalize_batch(
            self.repo,
            tenant.tenant_id,
            created.batch_id,
            storage=self.storage,
            now=now,
            events=self.events,
            provider="local",
        )
        batch = self.repo.get_batch(tenant.tenant_id, created.batch_id)
        assert batch is not None
        return batch

    def submit(self, contents: list[bytes], **options: object) -> CreateBatchResponse:
        tenant = options.get("tenant", ACME)
        assert isinstance(tenant, Tenant)
        created = self.create(contents, **options)  # type: ignore[arg-type]
        self.upload(created, contents, tenant=tenant)
        self.run(created, tenant=tenant)
        return created


def test_a_batch_of_10_with_4_files_completed_before_uploads_6_and_skips_4_with_their_results() -> None:
    # Given an earlier batch of the tenant whose 4 files completed
    world = World()
    earlier = world.submit([text(n) for n in range(4)])
    described_before = list(world.provider.calls)
    reads_before = world.repo.known_reads
    # When a batch of 10 files is created whose first 4 have the same contents (declared sha256)
    contents = [text(n) for n in range(10)]
    created = world.create(contents)
    # Then the 4 get no upload instruction, and say whose result they have; the 6 others get a PUT
    skipped = [f for f in created.files if f.upload is None]
    assert [f.file_id for f in skipped] == ["f00001", "f00002", "f00003", "f00004"]
    assert [f.duplicate_of.model_dump() for f in skipped if f.duplicate_of] == [
        {"batch_id": earlier.batch_id, "file_id": f"f0000{n}"} for n in range(1, 5)
    ]
    assert all(f.upload is not None and f.duplicate_of is None for f in created.files[4:])
    # And the lookup read each distinct hash once, and the manifest lists only the 6 files to process
    assert world.repo.known_reads - reads_before == 10
    assert world.storage.documents[manifest_key("acme", created.batch_id)] == [
        {"file_id": f"f{n:05d}"} for n in range(5, 11)
    ]
    batch = world.repo.get_batch("acme", created.batch_id)
    assert batch is not None
    assert (batch.count(FileStatus.SKIPPED), batch.count(FileStatus.AWAITING_UPLOAD), batch.arrived) == (
        4,
        6,
        4,
    )
    # When the 6 are uploaded and processed
    world.upload(created, contents)
    assert world.starter.started[created.batch_id]["dedup_fingerprint"] == FINGERPRINT
    assert world.repo.get_batch("acme", created.batch_id).run_files == 6  # type: ignore[union-attr]
    ended = world.run(created)
    # Then the batch completed, the provider described only the 6 new files, and the results list the 4
    # skipped ones with the earlier facts and description, at no token cost
    assert ended.status is BatchStatus.COMPLETED
    assert world.provider.calls[len(described_before) :] == [f"note-{n}.txt" for n in range(4, 10)]
    assert (ended.input_tokens, ended.output_tokens) == (60, 30)
    page = list_results(world.repo, ACME, created.batch_id, PageQuery(limit=100), cursors=CURSORS)
    results = {r.file_id: r for r in page.items}
    first = results["f00001"]
    assert first.status is FileStatus.SKIPPED and first.uploaded_at is None and first.finished_at == NOW
    assert first.duplicate_of is not None and first.duplicate_of.batch_id == earlier.batch_id
    assert first.sha256 == hashlib.sha256(text(0)).hexdigest()
    assert first.description is not None and first.description.text == f"{len(text(0))} bytes of text"
    assert results["f00005"].status is FileStatus.COMPLETED and results["f00005"].duplicate_of is None


def test_another_tenants_files_other_instructions_and_batches_that_do_not_ask_skip_nothing() -> None:
    # Given a file completed by tenant acme
    world = World()
    world.submit([text(1)])
    # When globex declares the same bytes, acme declares them with other instructions, and acme
    # declares them without skip_duplicates
    other_tenant = world.create([text(1)], tenant=GLOBEX)
    other_settings = world.create([text(1)], description=DescriptionOptions(language="de"))
    reads = world.repo.known_reads
    not_asked = world.create([text(1)], skip=False)
    # Then every one of them gets an upload instruction, and the last did not even look
    for created in (other_tenant, other_settings, not_asked):
        assert created.files[0].upload is not None and created.files[0].duplicate_of is None
    assert world.repo.known_reads == reads
    assert fingerprint("local", DescriptionInstructions(language="de")) != FINGERPRINT
    assert (
        fingerprint(provider_identity("bedrock", "amazon.nova-lite-v1:0"), DEFAULT_INSTRUCTIONS)
        != FINGERPRINT
    )


def test_a_result_past_its_files_expiry_is_not_reused() -> None:
    # Given a file completed 31 days ago in a deployment that keeps things 30 days
    world = World()
    old = world.create([text(1)], now=NOW - timedelta(days=31))
    world.upload(old, [text(1)])
    world.run(old, now=NOW - timedelta(days=31))
    # When the same bytes are declared now
    created = world.create([text(1)])
    # Then they are uploaded again
    assert created.files[0].upload is not None


def test_a_batch_whose_every_file_is_skipped_ends_completed_at_once_with_its_export_and_event() -> None:
    # Given two completed files
    world = World()
    world.submit([text(1), text(2)])
    announced = len(world.events.events)
    open_batches = world.repo.open_batches["acme"]
    # When a batch declares only those two
    created = world.create([text(2), text(1)])
    # Then it has ended already: completed, its export written, its end announced, its slot given back
    assert created.status is BatchStatus.COMPLETED
    assert [f.upload for f in created.files] == [None, None]
    batch = world.repo.get_batch("acme", created.batch_id)
    assert batch is not None and batch.status is BatchStatus.COMPLETED and batch.due_at is None
    assert len(world.storage.versions[export_key("acme", created.batch_id)][-1].splitlines()) == 2
    [event] = world.events.events[announced:]
    assert event["detail_type"] == "Batch Completed" and created.batch_id in event["detail"]
    assert world.repo.open_batches["acme"] == open_batches
    assert created.batch_id not in world.starter.started


def test_an_all_skipped_batch_whose_announcement_failed_at_create_is_announced_by_the_sweep() -> None:
    # Given two completed files, and a bus that fails once
    world = World()
    world.submit([text(1), text(2)])
    announced = len(world.events.events)
    world.events.fail_next = 1
    # When a batch declaring only those two is created: it ends at create, but is not announced
    created = world.create([text(2), text(1)])
    assert world.events.events[announced:] == []
    batch = world.repo.get_batch("acme", created.batch_id)
    assert batch is not None and batch.status is BatchStatus.COMPLETED and batch.end_unannounced
    assert batch.due_at == NOW + timedelta(minutes=2)
    # Then the sweep announces it once the watchdog time has passed, and only then
    assert sweep(world.repo, world.storage, world.starter, world.events, now=NOW, provider="local") == {}
    later = NOW + timedelta(minutes=2)
    outcomes = sweep(world.repo, world.storage, world.starter, world.events, now=later, provider="local")
    assert outcomes == {created.batch_id: "completed"}
    [event] = world.events.events[announced:]
    assert event["event_id"] == f"{created.batch_id}:0:completed"
    assert sweep(world.repo, world.storage, world.starter, world.events, now=later, provider="local") == {}


def test_close_leaves_skipped_files_skipped_and_a_batch_with_only_skipped_results_completes() -> None:
    # Given a batch with one skipped file and one that was never uploaded
    world = World()
    world.submit([text(1)])
    created = world.create([text(1), text(2)])
    batch = world.repo.get_batch("acme", created.batch_id)
    assert batch is not None
    # When it is closed
    closed = close_batch(
        world.repo, world.storage, world.starter, world.events, batch, now=NOW, provider="local"
    )
    # Then the skipped file stays skipped, the other expired, and the batch completed (it has results)
    statuses = [f.status for f in world.repo.list_files("acme", created.batch_id, limit=10)[0]]
    assert statuses == [FileStatus.SKIPPED, FileStatus.UPLOAD_EXPIRED]
    assert closed.status is BatchStatus.COMPLETED


def test_retry_never_runs_a_skipped_file_again() -> None:
    # Given a batch with a skipped file and a file that failed retryably
    world = World()
    world.submit([text(1)])
    created = world.create([text(1), text(2)])
    world.upload(created, [text(1), text(2)])
    processed = process_file(world.repo, world.storage, world.task(created, "f00002"), now=NOW)
    record_failure(
        world.repo,
        FailedFile(**processed.model_dump(), error=StepFunctionsError(Error="States.Timeout")),
        now=NOW,
    )
    finalize_batch(
        world.repo,
        "acme",
        created.batch_id,
        storage=world.storage,
        now=NOW,
        events=world.events,
        provider="local",
    )
    batch = world.repo.get_batch("acme", created.batch_id)
    assert batch is not None and batch.status is BatchStatus.COMPLETED_WITH_ERRORS
    # When everything retryable is retried
    from filebatch.models.api import RetryRequest

    answer = retry_batch(
        world.repo,
        world.storage,
        world.starter,
        world.events,
        batch,
        RetryRequest(),
        now=NOW,
        provider="local",
    )
    # Then only the failed file runs again
    assert answer.file_ids == ["f00002"]


def test_a_duplicate_found_after_upload_waits_for_the_first_and_reuses_its_description() -> None:
    # Given a batch that skips duplicates, with two files of the same bytes that nobody declared
    world = World()
    created = world.create([text(7), text(7)], declare=False)
    world.upload(created, [text(7), text(7)])
    first, second = (
        process_file(world.repo, world.storage, world.task(created, f), now=NOW) for f in ("f00001", "f00002")
    )
    # When both are described at once: the first claims the content, the second finds it claimed
    described = describe(
        world.storage, world.provider, DescribeFileInput(file=first), repo=world.repo, now=NOW
    )
    with pytest.raises(DuplicateInProgressError):
        describe(world.storage, world.provider, DescribeFileInput(file=second), repo=world.repo, now=NOW)
    # And the first is recorded, then the second's retry comes
    record_success(world.repo, described, now=NOW)
    reused = describe(world.storage, world.provider, DescribeFileInput(file=second), repo=world.repo, now=NOW)
    record_success(world.repo, reused, now=NOW)
    # Then the provider was called once; the second has the first's description, its own facts, and
    # says whose description it is; the tokens are counted once
    assert world.provider.calls == ["note-0.txt"]
    assert reused.description == described.description
    assert reused.duplicate_of == DuplicateOf(batch_id=created.batch_id, file_id="f00001")
    file = world.repo.get_file("acme", created.batch_id, "f00002")
    assert (
        file is not None and file.status is FileStatus.COMPLETED and file.duplicate_of == reused.duplicate_of
    )
    batch = world.repo.get_batch("acme", created.batch_id)
    assert batch is not None and (batch.input_tokens, batch.output_tokens) == (10, 5)
    # And the index names the first file as the one completed
    entry = world.repo.known[("acme", FINGERPRINT, hashlib.sha256(text(7)).hexdigest())]
    assert (entry.state, entry.file_id) == ("completed", "f00001")


def test_when_the_first_fails_the_waiting_file_takes_the_claim_over_and_is_described() -> None:
    # Given two files of the same bytes, the first holding the claim
    world = World()
    created = world.create([text(3), text(3)], declare=False)
    world.upload(created, [text(3), text(3)])
    first, second = (
        process_file(world.repo, world.storage, world.task(created, f), now=NOW) for f in ("f00001", "f00002")
    )
    describe(world.storage, world.provider, DescribeFileInput(file=first), repo=world.repo, now=NOW)
    with pytest.raises(DuplicateInProgressError):
        describe(world.storage, world.provider, DescribeFileInput(file=second), repo=world.repo, now=NOW)
    # When the first's describe fails for good (caught, recorded failed)
    record_failure(
        world.repo,
        FailedFile(**first.model_dump(), error=StepFunctionsError(Error="PermanentDescriptionError")),
        now=NOW,
    )
    # Then the second, at its next attempt, holds the claim and is described itself; no failure is reused
    described = describe(
        world.storage, world.provider, DescribeFileInput(file=second), repo=world.repo, now=NOW
    )
    assert described.duplicate_of is None
    assert world.provider.calls == ["note-0.txt", "note-1.txt"]


def test_a_claimant_that_stops_answering_is_taken_over_when_its_lease_runs_out() -> None:
    # Given a file whose describe claimed the content and then died (nothing recorded)
    world = World()
    created = world.create([text(4), text(4)], declare=False)
    world.upload(created, [text(4), text(4)])
    first, second = (
        process_file(world.repo, world.storage, world.task(created, f), now=NOW) for f in ("f00001", "f00002")
    )
    describe(world.storage, world.provider, DescribeFileInput(file=first), repo=world.repo, now=NOW)
    # When the second tries within the lease, and again after it
    with pytest.raises(DuplicateInProgressError):
        describe(
            world.storage,
            world.provider,
            DescribeFileInput(file=second),
            repo=world.repo,
            now=NOW + CLAIM_LEASE,
        )
    later = NOW + CLAIM_LEASE + timedelta(seconds=1)
    described = describe(
        world.storage, world.provider, DescribeFileInput(file=second), repo=world.repo, now=later
    )
    # Then it waited while the lease held, and was described once it had run out
    assert described.duplicate_of is None and world.provider.calls == ["note-0.txt", "note-1.txt"]


def test_the_claimants_own_retry_renews_its_claim_instead_of_waiting_for_itself() -> None:
    # Given a file holding the claim whose describe is retried (a throttled provider)
    world = World()
    created = world.create([text(5)], declare=False)
    world.upload(created, [text(5)])
    processed = process_file(world.repo, world.storage, world.task(created, "f00001"), now=NOW)
    describe(world.storage, world.provider, DescribeFileInput(file=processed), repo=world.repo, now=NOW)
    # When it is described again
    again = describe(
        world.storage, world.provider, DescribeFileInput(file=processed, attempt=1), repo=world.repo, now=NOW
    )
    # Then it goes on (no DuplicateInProgressError) and describes itself
    assert again.duplicate_of is None and len(world.provider.calls) == 2


def test_a_purged_batch_stops_being_a_duplicate_target_and_leaves_other_batches_entries() -> None:
    # Given two batches that completed different files
    world = World()
    doomed = world.submit([text(1), text(2)])
    kept = world.submit([text(3)])
    # When the first is deleted and purged
    assert world.repo.mark_deleted("acme", doomed.batch_id, at=NOW)
    purge_batch(world.repo, world.storage, "acme", doomed.batch_id)
    # Then its files' contents are no longer skipped; the other batch's still are
    again = world.create([text(1), text(2), text(3)])
    assert [f.upload is None for f in again.files] == [False, False, True]
    assert again.files[2].duplicate_of is not None and again.files[2].duplicate_of.batch_id == kept.batch_id


def test_a_skipped_file_counts_as_a_success_in_the_batchs_final_status() -> None:
    batch = Batch(
        tenant_id="acme",
        batch_id="b-" + "0" * 32,
        status=BatchStatus.PROCESSING,
        total=2,
        counts={FileStatus.SKIPPED: 1, FileStatus.UPLOAD_EXPIRED: 1},
        created_at=NOW,
        updated_at=NOW,
    )
    assert batch.final_status() is BatchStatus.COMPLETED
    batch.counts = {FileStatus.SKIPPED: 1, FileStatus.FAILED: 1}
    assert batch.final_status() is BatchStatus.COMPLETED_WITH_ERRORS


def test_an_all_skipped_batch_whose_end_fails_at_create_is_ended_by_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two completed files, and a bucket whose next write of an export fails
    world = World()
    world.submit([text(1), text(2)])
    put_stream = world.storage.put_stream

    def fail_once(key: str, chunks: Iterable[bytes], *, content_type: str) -> int:
        monkeypatch.setattr(world.storage, "put_stream", put_stream)
        raise StorageUnavailableError("S3 put failed: SlowDown")

    monkeypatch.setattr(world.storage, "put_stream", fail_once)
    # When a batch declaring only those two is created
    created = world.create([text(1), text(2)])
    assert created.status is BatchStatus.AWAITING_UPLOAD
    # Then the client still gets its batch (no error that would make it create another), due at once
    batch = world.repo.get_batch("acme", created.batch_id)
    assert batch is not None and batch.due_at is not None and batch.due_at <= NOW
    # And the next sweep ends it completed and announces it
    from filebatch.services.lifecycle import sweep

    outcomes = sweep(world.repo, world.storage, world.starter, world.events, now=NOW, provider="local")
    assert outcomes[created.batch_id] == "completed"
    assert world.events.events[-1]["detail_type"] == "Batch Completed"


def test_a_file_whose_wait_ran_out_is_failed_retryable_with_a_code_saying_so() -> None:
    # Given a file whose describe kept finding its content claimed until the retrier gave up
    world = World()
    created = world.create([text(6)], declare=False)
    world.upload(created, [text(6)])
    processed = process_file(world.repo, world.storage, world.task(created, "f00001"), now=NOW)
    waited = DuplicateInProgressError("file f00002 of batch b-x has the same content and is being described")
    cause = {"errorType": "DuplicateInProgressError", "errorMessage": str(waited)}
    # When the Catch records it
    record_failure(
        world.repo,
        FailedFile(
            **processed.model_dump(),
            error=StepFunctionsError(Error="DuplicateInProgressError", Cause=json.dumps(cause)),
        ),
        now=NOW,
    )
    # Then it failed with duplicate_in_progress, retryable: a retry reuses the description
    file = world.repo.get_file("acme", created.batch_id, "f00001")
    assert file is not None and file.error is not None
    assert (file.status, file.error.code, file.error.retryable) == (
        FileStatus.FAILED,
        "duplicate_in_progress",
        True,
    )
