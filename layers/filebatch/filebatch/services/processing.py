"""The workflow's per-file steps (verify, describe, record) and the batch's finalisation."""

from __future__ import annotations

import hashlib
from datetime import datetime

from filebatch import errors
from filebatch.errors import FileRejectedError, NotFoundError
from filebatch.media.detect import detect_content_type, is_compatible
from filebatch.media.inspect import basic_metadata
from filebatch.models.domain import BatchStatus, Description, FileError, FileFacts, FileStatus, upload_key
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
from filebatch.services.ports import BatchRepository, ObjectStorage

# Errors the state machine classifies as retryable when they reach a Catch (after Retry gave up).
RETRYABLE_ERROR_NAMES = frozenset(
    {
        "RetryableDescriptionError",
        "StorageUnavailableError",
        "States.Timeout",
        "Sandbox.Timedout",
        "Lambda.ServiceException",
        "Lambda.TooManyRequestsException",
    }
)


def process_file(repo: BatchRepository, storage: ObjectStorage, task: FileTask) -> ProcessedFile:
    """Check the stored bytes against what the client declared and learn what they are."""
    file = repo.get_file(task.tenant_id, task.batch_id, task.file_id)
    if file is None:
        raise NotFoundError(f"file {task.file_id} of batch {task.batch_id} not found", code="file_not_found")
    try:
        content = storage.read(file.object_key)
    except NotFoundError as error:
        raise FileRejectedError("the uploaded object is gone", code="object_missing") from error

    if len(content) != file.declared_size:
        raise FileRejectedError(
            f"uploaded {len(content)} bytes but {file.declared_size} were declared", code="size_mismatch"
        )
    detected = detect_content_type(content)
    if not is_compatible(file.declared_content_type, detected):
        raise FileRejectedError(
            f"declared {file.declared_content_type} but the content is {detected}", code="type_mismatch"
        )
    facts = FileFacts(
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        detected_content_type=detected,
        metadata=basic_metadata(content, detected),
    )
    return ProcessedFile(**task.model_dump(), filename=file.filename, facts=facts)


def describe(
    storage: ObjectStorage,
    provider: DescriptionProvider,
    request: DescribeFileInput,
    *,
    faults: FaultInjection | None = None,
) -> DescribedFile:
    file = request.file
    content = storage.read(upload_key(file.tenant_id, file.batch_id, file.file_id))
    description: Description = describe_file(
        provider, content, file.facts, file.filename, attempt=request.attempt, faults=faults
    )
    return DescribedFile(**file.model_dump(), description=description)


def failure_from(failed: FailedFile) -> FileError:
    """Turn what a Catch recorded into the file's error: a stable code, a message, retryable or not."""
    cause = error_cause(failed.error)
    message = str(cause.get("errorMessage") or failed.error.Error)
    code = _error_code(failed.error.Error, message)
    return FileError(code=code, message=message, retryable=failed.error.Error in RETRYABLE_ERROR_NAMES)


def _error_code(error_name: str, message: str) -> str:
    # FilebatchError.__str__ puts the code first ("code: message"), and Lambda reports str(error).
    head, sep, _ = message.partition(": ")
    if sep and head.replace("_", "").isalnum() and head.islower():
        return head
    # Otherwise the class's own code, or what Step Functions names a timeout.
    error_class = getattr(errors, error_name, None)
    if isinstance(error_class, type) and issubclass(error_class, errors.FilebatchError):
        return error_class.code
    return "timeout" if error_name in {"States.Timeout", "Sandbox.Timedout"} else "internal_error"


def record_success(repo: BatchRepository, described: DescribedFile, *, now: datetime) -> RecordResultOutput:
    recorded = repo.record_file_result(
        described.tenant_id,
        described.batch_id,
        described.file_id,
        status=FileStatus.COMPLETED,
        at=now,
        facts=described.facts,
        description=described.description,
        error=None,
    )
    return RecordResultOutput(file_id=described.file_id, status=FileStatus.COMPLETED.value, recorded=recorded)


def record_failure(repo: BatchRepository, failed: FailedFile, *, now: datetime) -> RecordResultOutput:
    recorded = repo.record_file_result(
        failed.tenant_id,
        failed.batch_id,
        failed.file_id,
        status=FileStatus.FAILED,
        at=now,
        facts=failed.facts,
        description=None,
        error=failure_from(failed),
    )
    return RecordResultOutput(file_id=failed.file_id, status=FileStatus.FAILED.value, recorded=recorded)


def finalize_batch(
    repo: BatchRepository, tenant_id: str, batch_id: str, *, now: datetime, page_size: int = 500
) -> FinalizeBatchOutput:
    """Fail every file the workflow left unfinished, then set the batch's terminal status.

    Runs after the Map (also when the Map itself failed), so every file ends in exactly one terminal
    state and the counters add up to the total."""
    swept = 0
    after: str | None = None
    while True:
        files, after = repo.list_files(tenant_id, batch_id, limit=page_size, after_file_id=after)
        for file in files:
            if file.status.is_terminal:
                continue
            if repo.record_file_result(
                tenant_id,
                batch_id,
                file.file_id,
                status=FileStatus.FAILED,
                at=now,
                facts=file.facts,
                description=None,
                error=FileError(
                    code="not_processed",
                    message="the workflow ended before this file had a result",
                    retryable=True,
                ),
            ):
                swept += 1
        if after is None:
            break
    batch = repo.get_batch(tenant_id, batch_id, consistent=True)
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found", code="batch_not_found")
    status = batch.status if batch.status.is_terminal else batch.final_status()
    repo.finish_batch(tenant_id, batch_id, status=status, at=now)
    return FinalizeBatchOutput(batch_id=batch_id, status=BatchStatus(status).value, swept_files=swept)
