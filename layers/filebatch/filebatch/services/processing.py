"""The workflow's per-file steps (verify, describe, record) and the batch's finalisation."""

from __future__ import annotations

import tempfile
from collections.abc import Generator
from contextlib import AbstractContextManager, closing
from datetime import datetime
from typing import BinaryIO

from filebatch import errors
from filebatch.errors import FileNotRunnableError, FileRejectedError, NotFoundError
from filebatch.media.detect import is_compatible
from filebatch.media.inspect import RANDOM_ACCESS_TYPES, basic_metadata, inspect_stream
from filebatch.media.source import spooled
from filebatch.models.domain import (
    BatchFile,
    BatchStatus,
    Description,
    DuplicateOf,
    FileError,
    FileFacts,
    FileStatus,
    upload_key,
)
from filebatch.models.workflow import (
    DescribedFile,
    DescribeFileInput,
    FailedFile,
    FileTask,
    FinalizeBatchOutput,
    ProcessedFile,
    RecordResultOutput,
    error_cause,
)
from filebatch.services.description import DescriptionProvider, FaultInjection, describe_file
from filebatch.services.duplicates import release_claim, reuse_or_claim, settle_claim
from filebatch.services.events import ANNOUNCE_WATCHDOG, announce_batch_ended
from filebatch.services.exports import write_export
from filebatch.services.ports import BatchEvents, BatchRepository, ObjectStorage

# Failures of the execution environment rather than of the file (Step Functions / Lambda error
# names): the state machine retries them, and what is left is recorded retryable with this code.
INFRASTRUCTURE_ERROR_CODES: dict[str, str] = {
    "Runtime.ExitError": "function_crashed",
    "Lambda.Unknown": "function_crashed",
    "Runtime.OutOfMemory": "out_of_memory",
    "Sandbox.Timedout": "timeout",
    "States.Timeout": "timeout",
}

# Lambda refused to run the step: the function's reserved concurrency stayed in use for the whole
# Retry budget (a burst of batches beyond what docs/scaling.md works out). Its Cause is Lambda's
# API error text ("Rate Exceeded. (Service: AWSLambda; ...)"), which carries no code of ours.
THROTTLING_ERROR_CODES: dict[str, str] = {"Lambda.TooManyRequestsException": "function_throttled"}

# Errors the state machine classifies as retryable when they reach a Catch (after Retry gave up).
RETRYABLE_ERROR_NAMES = frozenset(
    {
        "RetryableDescriptionError",
        "StorageUnavailableError",
        # Issue 10: the wait for another file's description ran out; a retry reuses it.
        "DuplicateInProgressError",
        "Lambda.ServiceException",
        *THROTTLING_ERROR_CODES,
        *INFRASTRUCTURE_ERROR_CODES,
    }
)


def process_file(
    repo: BatchRepository, storage: ObjectStorage, task: FileTask, *, now: datetime
) -> ProcessedFile:
    """Check the stored bytes against what the client declared and learn what they are, in one
    streamed pass (memory bounded whatever the file's size; images and PDFs spooled to local disk)."""
    file = _start_file(repo, task, now=now)
    try:
        # The version the upload event announced, not whatever the key holds now.
        stored = storage.stream(file.object_key, version_id=file.uploaded_version_id)
    except NotFoundError as error:
        raise FileRejectedError("the uploaded object is gone", code="object_missing") from error
    with closing(stored.chunks), tempfile.TemporaryFile() as spool:
        # Refused before a byte is read: a liar's gigabytes are not downloaded.
        if stored.size != file.declared_size:
            raise FileRejectedError(
                f"uploaded {stored.size} bytes but {file.declared_size} were declared", code="size_mismatch"
            )
        facts = inspect_stream(stored.chunks, spool)
        # S3 refuses a signed checksum that does not match, but not every S3 emulation does (the
        # local stack's does not), and a file uploaded without it was never checked: verified here.
        if file.declared_sha256 is not None and facts.sha256 != file.declared_sha256:
            raise FileRejectedError(
                f"declared sha256 {file.declared_sha256} but the uploaded bytes' sha256 is {facts.sha256}",
                code="checksum_mismatch",
            )
        detected = facts.detected_content_type
        if not is_compatible(file.declared_content_type, detected):
            raise FileRejectedError(
                f"declared {file.declared_content_type} but the content is {detected}", code="type_mismatch"
            )
        if detected in RANDOM_ACCESS_TYPES:
            facts.metadata = basic_metadata(spool, detected)
    return ProcessedFile(
        **task.model_dump(),
        filename=file.filename,
        version_id=stored.version_id,
        facts=facts,
        expires_at=file.expires_at,
    )


def _start_file(repo: BatchRepository, task: FileTask, *, now: datetime) -> BatchFile:
    """uploaded (or failed with a retryable error, in a retry) → processing. A step run again after a
    crash finds the file processing already and goes on; any other state is not this run's to work
    on (cancelled, expired, already done): FileNotRunnableError, which records nothing."""
    file = repo.get_file(task.tenant_id, task.batch_id, task.file_id)
    if file is None:
        raise NotFoundError(f"file {task.file_id} of batch {task.batch_id} not found", code="file_not_found")
    if file.status is FileStatus.PROCESSING:
        return file
    runnable = file.status is FileStatus.UPLOADED or (
        file.failed_retryably and _failed_before_this_run(repo, task, file)
    )
    if runnable and repo.move_file(
        task.tenant_id,
        task.batch_id,
        task.file_id,
        expected=file.status,
        to=FileStatus.PROCESSING,
        at=now,
        while_batch_runs=True,
    ):
        file.status = FileStatus.PROCESSING
        return file
    raise FileNotRunnableError(
        f"file {task.file_id} is {file.status.value}, not ready for processing", code="file_not_runnable"
    )


def _failed_before_this_run(repo: BatchRepository, task: FileTask, file: BatchFile) -> bool:
    """A retry runs again the files that failed retryably in an earlier run. One that failed in this
    run keeps its result: its Express child running again (at-least-once) must change nothing."""
    batch = repo.get_batch(task.tenant_id, task.batch_id, consistent=True)
    return (
        batch is not None
        and batch.run_started_at is not None
        and file.finished_at is not None
        and file.finished_at < batch.run_started_at
    )


class StoredMedia:
    """A MediaSource over one pinned version of a stored object: each read is a new streamed GET of
    that version, so a provider pays only for what it reads."""

    def __init__(self, storage: ObjectStorage, key: str, version_id: str | None, size: int) -> None:
        self._storage = storage
        self._key = key
        self._version_id = version_id
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def chunks(self) -> Generator[bytes, None, None]:
        stored = self._storage.stream(self._key, version_id=self._version_id)
        with closing(stored.chunks):
            yield from stored.chunks

    def open(self) -> AbstractContextManager[BinaryIO]:
        return spooled(self.chunks())


def describe(
    storage: ObjectStorage,
    provider: DescriptionProvider,
    request: DescribeFileInput,
    *,
    faults: FaultInjection | None = None,
    repo: BatchRepository | None = None,
    now: datetime | None = None,
) -> DescribedFile:
    """`repo` and `now`: for a batch that skips duplicates, the hash index is asked first (issue 10):
    a file of the same bytes that completed gives its description and the provider is not called."""
    file = request.file
    if file.dedup_fingerprint is not None and repo is not None and now is not None:
        reused = reuse_or_claim(repo, file, now=now)
        if reused is not None:
            return reused
    # Exactly the bytes the process step verified: bytes written to the key since then are not these.
    media = StoredMedia(
        storage,
        upload_key(file.tenant_id, file.batch_id, file.file_id),
        file.version_id,
        file.facts.size_bytes,
    )
    description: Description = describe_file(
        provider,
        media,
        file.facts,
        file.filename,
        attempt=request.attempt,
        faults=faults,
        instructions=file.instructions,
    )
    return DescribedFile(**file.model_dump(), description=description)


def failure_from(failed: FailedFile) -> FileError:
    """Turn what a Catch recorded into the file's error: a stable code, a message, retryable or not."""
    cause = error_cause(failed.error)
    message = str(cause.get("errorMessage") or failed.error.Error)
    code = _error_code(failed.error.Error, message)
    return FileError(code=code, message=message, retryable=failed.error.Error in RETRYABLE_ERROR_NAMES)


def _error_code(error_name: str, message: str) -> str:
    if error_name in INFRASTRUCTURE_ERROR_CODES:
        return INFRASTRUCTURE_ERROR_CODES[error_name]
    if error_name in THROTTLING_ERROR_CODES:
        return THROTTLING_ERROR_CODES[error_name]
    # FilebatchError.__str__ puts the code first ("code: message"), and Lambda reports str(error).
    head, sep, _ = message.partition(": ")
    if sep and head.replace("_", "").isalnum() and head.islower():
        return head
    # Otherwise the class's own code, or what Step Functions names a timeout.
    error_class = getattr(errors, error_name, None)
    if isinstance(error_class, type) and issubclass(error_class, errors.FilebatchError):
        return error_class.code
    return "internal_error"


def record_success(repo: BatchRepository, described: DescribedFile, *, now: datetime) -> RecordResultOutput:
    recorded = _record(
        repo,
        described,
        to=FileStatus.COMPLETED,
        now=now,
        facts=described.facts,
        description=described.description,
        error=None,
        duplicate_of=described.duplicate_of,
    )
    if described.dedup_fingerprint is not None and described.duplicate_of is None:
        # Recorded by an earlier attempt of this step (at least once) counts as completed too.
        completed = recorded or _status_of(repo, described) is FileStatus.COMPLETED
        settle_claim(repo, described, completed=completed, now=now)
    return RecordResultOutput(file_id=described.file_id, status=FileStatus.COMPLETED.value, recorded=recorded)


def record_failure(repo: BatchRepository, failed: FailedFile, *, now: datetime) -> RecordResultOutput:
    if failed.error.Error == FileNotRunnableError.__name__:
        # The file was not this run's to work on: whatever it is stands.
        return RecordResultOutput(file_id=failed.file_id, status=FileStatus.FAILED.value, recorded=False)
    recorded = _record(
        repo,
        failed,
        to=FileStatus.FAILED,
        now=now,
        facts=failed.facts,
        description=None,
        error=failure_from(failed),
    )
    # A file waiting for this one's description takes the claim over at once, not after the lease.
    release_claim(repo, failed)
    return RecordResultOutput(file_id=failed.file_id, status=FileStatus.FAILED.value, recorded=recorded)


# A file moves on between its read and its write at most a few times (uploaded → processing).
_RECORD_ATTEMPTS = 3


def _record(
    repo: BatchRepository,
    task: FileTask,
    *,
    to: FileStatus,
    now: datetime,
    facts: FileFacts | None,
    description: Description | None,
    error: FileError | None,
    duplicate_of: DuplicateOf | None = None,
) -> bool:
    """The file's first terminal state, from whichever state it is in: False if it had one already.
    A result comes for a file the process step moved to processing: that is tried first, with no
    read; the file is read only when it was elsewhere (a failure caught before the move, a cancel)."""
    seen = FileStatus.PROCESSING
    for _ in range(_RECORD_ATTEMPTS):
        if repo.move_file(
            task.tenant_id,
            task.batch_id,
            task.file_id,
            expected=seen,
            to=to,
            at=now,
            facts=facts,
            description=description,
            error=error,
            duplicate_of=duplicate_of,
        ):
            return True
        file = repo.get_file(task.tenant_id, task.batch_id, task.file_id)
        if file is None or file.status.is_terminal:
            return False
        seen = file.status
    return False


def _status_of(repo: BatchRepository, task: FileTask) -> FileStatus | None:
    file = repo.get_file(task.tenant_id, task.batch_id, task.file_id)
    return file.status if file else None


NOT_PROCESSED_ERROR = FileError(
    code="not_processed", message="the workflow ended before this file had a result", retryable=True
)


def finalize_batch(
    repo: BatchRepository,
    tenant_id: str,
    batch_id: str,
    *,
    storage: ObjectStorage,
    now: datetime,
    events: BatchEvents,
    provider: str,
    retry: int = 0,
    page_size: int = 500,
) -> FinalizeBatchOutput:
    """Fail every file the run left unfinished, write the batch's results export, set the batch's
    terminal status, announce it.

    Runs after the Map (also when the Map itself failed), so every file ends in exactly one terminal
    state and the counts add up to the total. A batch being cancelled is left to its cancel. The
    export is written before the terminal status, so a batch seen ended has its export; a later run
    (a retry) writes it again.
    `provider` is the deployment's description provider (the announced status body names it)."""
    batch = repo.get_batch(tenant_id, batch_id, consistent=True)
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found", code="batch_not_found")
    if batch.retries != retry:
        # A late finalize of an earlier run: the batch is another run's now.
        return FinalizeBatchOutput(batch_id=batch_id, status=batch.status.value, swept_files=0)
    if batch.end_unannounced:
        # A retried finalize (its first attempt ended the batch, then failed to announce it).
        announce_batch_ended(repo, events, tenant_id, batch_id, provider=provider, now=now)
    if batch.status is not BatchStatus.PROCESSING:
        return FinalizeBatchOutput(batch_id=batch_id, status=batch.status.value, swept_files=0)
    swept = 0
    after: str | None = None
    while True:
        files, after = repo.list_files(tenant_id, batch_id, limit=page_size, after_file_id=after)
        unfinished = [(f.file_id, f.status) for f in files if not f.status.is_terminal]
        if unfinished:
            swept += repo.move_files(
                tenant_id, batch_id, unfinished, to=FileStatus.FAILED, at=now, error=NOT_PROCESSED_ERROR
            )
        if after is None:
            break
    batch = repo.get_batch(tenant_id, batch_id, consistent=True)
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found", code="batch_not_found")
    if batch.status is BatchStatus.PROCESSING:
        # Every file is terminal now, so the export is final.
        write_export(repo, storage, tenant_id, batch_id, page_size=page_size)
        repo.finish_batch(
            tenant_id,
            batch_id,
            status=batch.final_status(),
            expected=frozenset({BatchStatus.PROCESSING}),
            at=now,
            # Due until announced: should every retry of this step fail, the sweep announces it.
            due_at=now + ANNOUNCE_WATCHDOG,
        )
        batch = repo.get_batch(tenant_id, batch_id, consistent=True) or batch
    if batch.end_unannounced:
        # Announced whether or not this call made the transition: a retried finalize whose first
        # attempt failed after finishing the batch still announces (at least once).
        announce_batch_ended(repo, events, tenant_id, batch_id, provider=provider, now=now)
    return FinalizeBatchOutput(batch_id=batch_id, status=batch.status.value, swept_files=swept)
