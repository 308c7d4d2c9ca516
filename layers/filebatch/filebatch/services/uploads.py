"""Upload events: mark the file uploaded (exactly once) and start the batch's workflow when the
last file has arrived. Events come at least once and in any order; every path here is idempotent."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from filebatch.models.domain import BatchStatus, FileStatus, manifest_key, parse_upload_key
from filebatch.models.workflow import ExecutionInput
from filebatch.services.ports import BatchRepository, WorkflowStarter


class UploadOutcome(StrEnum):
    IGNORED = "ignored"  # not an upload key, or a file/batch we do not know
    RECORDED = "recorded"  # first event for this file
    DUPLICATE = "duplicate"  # already recorded: nothing changed
    STARTED = "started"  # recorded (or duplicate) and the batch's execution was started


def record_upload(
    repo: BatchRepository,
    workflow: WorkflowStarter,
    *,
    key: str,
    size: int,
    version_id: str | None,
    now: datetime,
) -> UploadOutcome:
    ref = parse_upload_key(key)
    if ref is None:
        return UploadOutcome.IGNORED
    recorded = repo.mark_uploaded(
        ref.tenant_id, ref.batch_id, ref.file_id, size=size, version_id=version_id, at=now
    )
    if not recorded and repo.get_file(ref.tenant_id, ref.batch_id, ref.file_id) is None:
        return UploadOutcome.IGNORED

    # Checked on duplicates too: if an earlier delivery counted the last file but failed before
    # starting the workflow, its redelivery starts it. A closed batch is started by its close.
    batch = repo.get_batch(ref.tenant_id, ref.batch_id, consistent=True)
    if (
        batch is None
        or not batch.all_uploaded
        or batch.status is not BatchStatus.AWAITING_UPLOAD
        or batch.closed_at is not None
    ):
        return UploadOutcome.RECORDED if recorded else UploadOutcome.DUPLICATE

    execution_input = ExecutionInput(
        tenant_id=ref.tenant_id,
        batch_id=ref.batch_id,
        manifest_key=manifest_key(ref.tenant_id, ref.batch_id),
        instructions=batch.instructions,
        dedup_fingerprint=batch.dedup_fingerprint,
    )
    # Named after the batch: a second start is refused by Step Functions, so at most one runs.
    workflow.start(batch.execution_name, execution_input.model_dump(mode="json"))
    # Files skipped at create (issue 10) are not in the run: they ended before it.
    run_files = batch.total - batch.count(FileStatus.SKIPPED)
    repo.start_run(ref.tenant_id, ref.batch_id, files=run_files, at=now)
    return UploadOutcome.STARTED
