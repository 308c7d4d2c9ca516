"""A batch's ways off the happy road: close (by the client, or by the end of the upload window),
cancel, retry, and the sweep that carries out whatever is due, an end not yet announced included.

Each operation is a first conditional write that decides (a close, a cancel, a retry is claimed
once), then work that is idempotent and can be repeated: the claimed batch is *due* (`due_at`), so
if the work stops half way (a crash, a timeout) the sweep carries it out again a minute later. Every
file moves with a conditional transaction that moves its batch's counts with it, so whatever runs
twice or in any order, a file ends in exactly one terminal state and is counted once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from filebatch.errors import ConflictError, InvalidRequestError
from filebatch.models.api import RetryRequest, RetryResponse
from filebatch.models.domain import (
    Batch,
    BatchFile,
    BatchStatus,
    FileError,
    FileStatus,
    execution_name,
    manifest_key,
)
from filebatch.models.workflow import ExecutionInput
from filebatch.services.events import ANNOUNCE_WATCHDOG, announce_batch_ended
from filebatch.services.exports import write_export
from filebatch.services.ports import BatchEvents, BatchRepository, ObjectStorage, WorkflowStarter

log = logging.getLogger(__name__)

# How long a claimed close or cancel may take before the sweep carries it out again.
WATCHDOG = timedelta(minutes=2)
# Files read per page while closing, cancelling or choosing what to retry.
PAGE = 1000
# A cancel moves every unfinished file; a file that moved on meanwhile is looked at again, at most
# this many times (each pass sees a file that a still-running step moved, then moves it).
CANCEL_PASSES = 5

UPLOAD_EXPIRED_ERROR = FileError(
    code="upload_expired",
    message="the batch's upload window closed before this file arrived",
    retryable=False,
)
CANCELLED_ERROR = FileError(code="cancelled", message="the batch was cancelled", retryable=False)
RETRYABLE_FROM = frozenset({BatchStatus.COMPLETED_WITH_ERRORS, BatchStatus.FAILED})


def _files(repo: BatchRepository, batch: Batch) -> list[BatchFile]:
    files: list[BatchFile] = []
    after: str | None = None
    while True:
        page, after = repo.list_files(batch.tenant_id, batch.batch_id, limit=PAGE, after_file_id=after)
        files += page
        if after is None:
            return files


# -- close ------------------------------------------------------------------------------------
def close_batch(
    repo: BatchRepository,
    storage: ObjectStorage,
    workflow: WorkflowStarter,
    events: BatchEvents,
    batch: Batch,
    *,
    now: datetime,
    provider: str,
) -> Batch:
    """POST /close: no more uploads from now on; processing starts with what arrived."""
    batch = _announce_if_owed(repo, events, batch, now=now, provider=provider)
    if batch.status is not BatchStatus.AWAITING_UPLOAD:
        raise ConflictError(
            f"batch {batch.batch_id} is {batch.status.value}: only a batch awaiting upload can be closed",
            code="batch_not_open",
        )
    if batch.closed_at is None:
        repo.close_uploads(batch.tenant_id, batch.batch_id, at=now, due_at=now + WATCHDOG)
    return carry_out_close(
        repo, storage, workflow, events, batch.tenant_id, batch.batch_id, now=now, provider=provider
    )


def carry_out_close(
    repo: BatchRepository,
    storage: ObjectStorage,
    workflow: WorkflowStarter,
    events: BatchEvents,
    tenant_id: str,
    batch_id: str,
    *,
    now: datetime,
    provider: str,
) -> Batch:
    """Files not uploaded become upload_expired; the run starts with the others, or the batch is
    expired when none arrived. Repeatable: each step is conditional."""
    batch = _read(repo, tenant_id, batch_id)
    if batch.status is not BatchStatus.AWAITING_UPLOAD or batch.closed_at is None:
        return batch  # already carried out (or cancelled meanwhile)
    # Read after the close was written: no upload is recorded any more, so this list is final.
    files = _files(repo, batch)
    repo.move_files(
        tenant_id,
        batch_id,
        [(f.file_id, f.status) for f in files if f.status is FileStatus.AWAITING_UPLOAD],
        to=FileStatus.UPLOAD_EXPIRED,
        at=now,
        error=UPLOAD_EXPIRED_ERROR,
    )
    arrived = [f.file_id for f in files if f.status is FileStatus.UPLOADED]
    if not arrived:
        # expired, or completed when files skipped as duplicates (issue 10) have their results.
        return end_batch(
            repo,
            storage,
            events,
            tenant_id,
            batch_id,
            expected=BatchStatus.AWAITING_UPLOAD,
            now=now,
            provider=provider,
        )
    key = manifest_key(tenant_id, batch_id, "-closed")
    storage.put_json(key, [{"file_id": file_id} for file_id in arrived])
    _start(workflow, batch, key, run=0)
    repo.start_run(tenant_id, batch_id, files=len(arrived), at=now)
    return _read(repo, tenant_id, batch_id)


def end_batch(
    repo: BatchRepository,
    storage: ObjectStorage,
    events: BatchEvents,
    tenant_id: str,
    batch_id: str,
    *,
    expected: BatchStatus,
    now: datetime,
    provider: str,
    status: BatchStatus | None = None,
) -> Batch:
    """End a batch whose every file is terminal, from `expected`: its export, then its terminal
    status (`status`, else what its counts say: Batch.final_status), then its announcement.
    Repeatable: each step is idempotent or conditional. The batch stays due until the announcement
    is made, so if it is not (an error here, a crash) the sweep makes it."""
    write_export(repo, storage, tenant_id, batch_id)
    final = status or _read(repo, tenant_id, batch_id).final_status()
    repo.finish_batch(
        tenant_id,
        batch_id,
        status=final,
        expected=frozenset({expected}),
        at=now,
        due_at=now + ANNOUNCE_WATCHDOG,
    )
    return _ended(repo, events, tenant_id, batch_id, now=now, provider=provider)


def _start(workflow: WorkflowStarter, batch: Batch, key: str, *, run: int) -> None:
    execution_input = ExecutionInput(
        tenant_id=batch.tenant_id,
        batch_id=batch.batch_id,
        manifest_key=key,
        retry=run,
        instructions=batch.instructions,
        dedup_fingerprint=batch.dedup_fingerprint,
    )
    # Named after the batch (and the retry): a second start is refused, so at most one runs.
    workflow.start(execution_name(batch.batch_id, run), execution_input.model_dump(mode="json"))


def _ended(
    repo: BatchRepository, events: BatchEvents, tenant_id: str, batch_id: str, *, now: datetime, provider: str
) -> Batch:
    """The batch after its end, announced unless it already was (again, if a first attempt stopped
    after the write: the event id is the same, so announcing twice is one event to whoever dedupes)."""
    batch = _read(repo, tenant_id, batch_id)
    if batch.end_unannounced:
        announce_batch_ended(repo, events, tenant_id, batch_id, provider=provider, now=now)
        batch = _read(repo, tenant_id, batch_id)
    return batch


def _announce_if_owed(
    repo: BatchRepository, events: BatchEvents, batch: Batch, *, now: datetime, provider: str
) -> Batch:
    """A close or cancel repeated on a batch whose end was written but not announced announces it
    (as the sweep would), before answering as for any ended batch."""
    if not batch.end_unannounced:
        return batch
    return _ended(repo, events, batch.tenant_id, batch.batch_id, now=now, provider=provider)


def _read(repo: BatchRepository, tenant_id: str, batch_id: str) -> Batch:
    batch = repo.get_batch(tenant_id, batch_id, consistent=True)
    if batch is None:
        raise ConflictError(f"batch {batch_id} is gone", code="batch_not_found")
    return batch


# -- cancel -----------------------------------------------------------------------------------
def cancel_batch(
    repo: BatchRepository,
    storage: ObjectStorage,
    workflow: WorkflowStarter,
    events: BatchEvents,
    batch: Batch,
    *,
    now: datetime,
    provider: str,
) -> Batch:
    """POST /cancel: in any state that has not ended; repeating it changes nothing (but announces
    an end that is owed its announcement)."""
    batch = _announce_if_owed(repo, events, batch, now=now, provider=provider)
    if batch.status is BatchStatus.CANCELLED:
        return batch
    if batch.status.is_terminal:
        raise ConflictError(
            f"batch {batch.batch_id} has ended ({batch.status.value}); there is nothing to cancel",
            code="batch_ended",
        )
    if batch.status is not BatchStatus.CANCELLING and not repo.begin_cancel(
        batch.tenant_id, batch.batch_id, at=now, due_at=now + WATCHDOG
    ):
        # It moved on between the read and the write (ended, or another cancel won): look again.
        return cancel_batch(
            repo,
            storage,
            workflow,
            events,
            _read(repo, batch.tenant_id, batch.batch_id),
            now=now,
            provider=provider,
        )
    return carry_out_cancel(
        repo, storage, workflow, events, batch.tenant_id, batch.batch_id, now=now, provider=provider
    )


def carry_out_cancel(
    repo: BatchRepository,
    storage: ObjectStorage,
    workflow: WorkflowStarter,
    events: BatchEvents,
    tenant_id: str,
    batch_id: str,
    *,
    now: datetime,
    provider: str,
) -> Batch:
    """Stop the run, cancel every file that has not ended, end the batch cancelled. Repeatable."""
    batch = _read(repo, tenant_id, batch_id)
    if batch.status is not BatchStatus.CANCELLING:
        return batch
    # The run's children stop with it; a step already running may still finish its file, which then
    # keeps that result (it ended before the cancel reached it) or is refused (the file was cancelled).
    workflow.stop(batch.execution_name, cause=f"batch {batch_id} cancelled")
    for _ in range(CANCEL_PASSES):
        unfinished = [(f.file_id, f.status) for f in _files(repo, batch) if not f.status.is_terminal]
        if not unfinished:
            break
        repo.move_files(
            tenant_id, batch_id, unfinished, to=FileStatus.CANCELLED, at=now, error=CANCELLED_ERROR
        )
    else:
        # Still moving: the sweep comes back (the batch stays due) rather than ending it half done.
        return _read(repo, tenant_id, batch_id)
    # Every file is terminal: the export is final (as finalize writes it for a batch that ran).
    return end_batch(
        repo,
        storage,
        events,
        tenant_id,
        batch_id,
        expected=BatchStatus.CANCELLING,
        status=BatchStatus.CANCELLED,
        now=now,
        provider=provider,
    )


# -- retry ------------------------------------------------------------------------------------
def retry_batch(
    repo: BatchRepository,
    storage: ObjectStorage,
    workflow: WorkflowStarter,
    events: BatchEvents,
    batch: Batch,
    request: RetryRequest,
    *,
    now: datetime,
    provider: str,
) -> RetryResponse:
    """POST /retry: run the failed files again, in a new execution `<batch_id>-r<n>`. An end not yet
    announced is announced first: the retry's run will end (and be announced) as another event."""
    batch = _announce_if_owed(repo, events, batch, now=now, provider=provider)
    if not batch.status.is_terminal:
        raise ConflictError(
            f"batch {batch.batch_id} is {batch.status.value}: only an ended batch can be retried",
            code="batch_not_ended",
        )
    files = {f.file_id: f for f in _files(repo, batch)}
    if request.file_ids is None:
        chosen = [f.file_id for f in files.values() if f.failed_retryably]
    else:
        chosen = list(dict.fromkeys(request.file_ids))
        refused = [
            file_id for file_id in chosen if file_id not in files or not files[file_id].failed_retryably
        ]
        if refused:
            raise InvalidRequestError(
                f"not failed with a retryable error: {', '.join(refused[:10])}"
                + (f" and {len(refused) - 10} more" if len(refused) > 10 else ""),
                code="file_not_retryable",
            )
    if not chosen:
        raise ConflictError(f"batch {batch.batch_id} has no failed file to retry", code="nothing_to_retry")
    retry = batch.retries + 1
    key = manifest_key(batch.tenant_id, batch.batch_id, f"-r{retry}")
    storage.put_json(key, [{"file_id": file_id} for file_id in chosen])
    if batch.status not in RETRYABLE_FROM or not repo.claim_retry(
        batch.tenant_id, batch.batch_id, expected=batch.status, retry=retry, files=len(chosen), at=now
    ):
        raise ConflictError(
            f"batch {batch.batch_id} changed meanwhile (another retry?); read it again",
            code="retry_in_progress",
        )
    try:
        _start(workflow, batch, key, run=retry)
    except Exception:
        # Not started: the batch ends again as it was, and gives its open-batch slot back. That end
        # was announced before the retry was claimed (the route's caller saw it ended): not again.
        repo.finish_batch(
            batch.tenant_id,
            batch.batch_id,
            status=batch.status,
            expected=frozenset({BatchStatus.PROCESSING}),
            at=now,
            due_at=None,
        )
        raise
    return RetryResponse(
        batch_id=batch.batch_id,
        retry=retry,
        execution_name=execution_name(batch.batch_id, retry),
        file_ids=chosen,
        status=BatchStatus.PROCESSING,
    )


# -- the sweep --------------------------------------------------------------------------------
def sweep(
    repo: BatchRepository,
    storage: ObjectStorage,
    workflow: WorkflowStarter,
    events: BatchEvents,
    *,
    now: datetime,
    provider: str,
    limit: int = 100,
) -> dict[str, str]:
    """Carry out what is due: close the batches whose upload window has ended, finish closes and
    cancels that stopped half way, and announce ends whose announcement failed. Returns what
    happened to each batch (for the log)."""
    outcomes: dict[str, str] = {}
    for tenant_id, batch_id in repo.list_due(now=now, limit=limit):
        try:
            batch = repo.get_batch(tenant_id, batch_id, consistent=True)
            if batch is None:
                continue
            if batch.status is BatchStatus.AWAITING_UPLOAD:
                if batch.closed_at is None:
                    repo.close_uploads(tenant_id, batch_id, at=now, due_at=now + WATCHDOG)
                batch = carry_out_close(
                    repo, storage, workflow, events, tenant_id, batch_id, now=now, provider=provider
                )
            elif batch.status is BatchStatus.CANCELLING:
                batch = carry_out_cancel(
                    repo, storage, workflow, events, tenant_id, batch_id, now=now, provider=provider
                )
            elif batch.end_unannounced:
                batch = _ended(repo, events, tenant_id, batch_id, now=now, provider=provider)
            outcomes[batch_id] = batch.status.value
        except Exception:
            # One batch's trouble does not hold up the others; it is still due next time.
            log.exception("sweep: batch %s not carried out", batch_id)
            outcomes[batch_id] = "error"
    return outcomes
