"""Deleting a batch: the API marks it deleted (from then on every route answers 404) and queues a
purge; the purge job removes every version of its objects, then its items, the batch item last.

The purge is idempotent and resumable: each step deletes what is still there, and the batch item
(marked deleted) stays until everything else is gone, so a redelivered job finishes the work."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from filebatch.errors import ConflictError, NotFoundError
from filebatch.models.api import DeleteBatchResponse
from filebatch.models.domain import BATCH_ID_PATTERN, Batch, Tenant, batch_object_prefixes
from filebatch.models.workflow import PurgeBatchJob
from filebatch.services.duplicates import forget_batch_results
from filebatch.services.ports import BatchRepository, JobQueue, ObjectStorage


def delete_batch(
    repo: BatchRepository, jobs: JobQueue, tenant: Tenant, batch_id: str, *, now: datetime
) -> DeleteBatchResponse:
    """DELETE /v1/batches/{id}: 404 for a batch the tenant does not have (or already deleted), 409
    `batch_not_ended` while it has not ended (cancel it first)."""
    batch = repo.get_batch(tenant.tenant_id, batch_id) if re.match(BATCH_ID_PATTERN, batch_id) else None
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found", code="batch_not_found")
    if not batch.status.is_terminal:
        raise _not_ended(batch)
    # One conditional write: only an ended batch not yet deleted. A concurrent DELETE, or the batch
    # moving on since the read (a retry), loses here.
    if not repo.mark_deleted(tenant.tenant_id, batch_id, at=now):
        current = repo.get_batch(tenant.tenant_id, batch_id, consistent=True)
        if current is None:
            raise NotFoundError(f"batch {batch_id} not found", code="batch_not_found")
        raise _not_ended(current)
    try:
        jobs.enqueue(PurgeBatchJob(tenant_id=tenant.tenant_id, batch_id=batch_id))
    except BaseException:
        # Without its purge job a deleted batch would only go at its retention: give it back, so that
        # the client's retry of the DELETE can queue it.
        repo.unmark_deleted(tenant.tenant_id, batch_id, at=now)
        raise
    return DeleteBatchResponse(batch_id=batch_id)


def _not_ended(batch: Batch) -> ConflictError:
    return ConflictError(
        f"batch {batch.batch_id} is {batch.status.value}: only an ended batch can be deleted (cancel it "
        "first)",
        code="batch_not_ended",
    )


@dataclass(frozen=True)
class PurgeOutcome:
    batch_id: str
    # purged: this run finished the purge; gone: nothing was left; refused: the batch is not deleted.
    outcome: str
    objects: int = 0
    items: int = 0


def purge_batch(repo: BatchRepository, storage: ObjectStorage, tenant_id: str, batch_id: str) -> PurgeOutcome:
    batch = repo.get_batch(tenant_id, batch_id, consistent=True, include_deleted=True)
    if batch is None:
        return PurgeOutcome(batch_id, "gone")
    if batch.deleted_at is None:
        # Never purge a live batch: its DELETE was undone (the job was sent after all) or never made.
        return PurgeOutcome(batch_id, "refused")
    objects = sum(storage.delete_prefix(prefix) for prefix in batch_object_prefixes(tenant_id, batch_id))
    release_batch_name(repo, batch)
    # Before the file items go: they say which hashes the batch's files own (issue 10).
    forget_batch_results(repo, batch)
    items = repo.delete_batch_items(tenant_id, batch_id)
    return PurgeOutcome(batch_id, "purged", objects=objects, items=items)


def release_batch_name(repo: BatchRepository, batch: Batch) -> None:
    """Free the name a deleted batch held, so that a new batch may take it. Runs before the batch
    item is deleted (the item says which name) and again on every redelivery: releasing is
    conditional on this batch still holding the name, so a name another batch took since stays its."""
    if batch.name is not None:
        repo.release_name(batch.tenant_id, batch.name, batch_id=batch.batch_id)
