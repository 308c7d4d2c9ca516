"""A batch's results as one file: written when the batch ends, downloaded with a presigned GET.

`exports/<tenant>/<batch>.jsonl` holds one FileResult JSON per line, in file (submission) order. It
is written by the finalize step, before the batch takes its terminal status (so a terminal batch has
its export), and written again by a later finalize (after a retry). It lives under the bucket's
lifecycle rule, which expires it RetentionDays after it was written."""

from __future__ import annotations

import re
from collections.abc import Generator
from datetime import datetime, timedelta

from filebatch.errors import ConflictError, NotFoundError
from filebatch.models.api import ExportResponse
from filebatch.models.domain import BATCH_ID_PATTERN, Tenant, export_key
from filebatch.services.batches import to_file_result
from filebatch.services.ports import BatchRepository, ObjectStorage

EXPORT_CONTENT_TYPE = "application/x-ndjson"


def write_export(
    repo: BatchRepository, storage: ObjectStorage, tenant_id: str, batch_id: str, *, page_size: int = 500
) -> int:
    """Write (or rewrite) the batch's export, streamed page by page; returns how many results."""
    written = 0

    def lines() -> Generator[bytes, None, None]:
        nonlocal written
        after: str | None = None
        while True:
            # Consistent: the finalize step's sweep wrote some of these files a moment ago.
            files, after = repo.list_files(
                tenant_id, batch_id, limit=page_size, after_file_id=after, consistent=True
            )
            for file in files:
                written += 1
                yield to_file_result(file).model_dump_json().encode() + b"\n"
            if after is None:
                return

    storage.put_stream(export_key(tenant_id, batch_id), lines(), content_type=EXPORT_CONTENT_TYPE)
    return written


def get_export(
    repo: BatchRepository,
    storage: ObjectStorage,
    tenant: Tenant,
    batch_id: str,
    *,
    ttl_seconds: int,
    now: datetime,
) -> ExportResponse:
    """GET /v1/batches/{id}/export: 404 for an unknown (or deleted) batch, 409 `export_not_ready`
    while the batch runs or before its export is written."""
    batch = repo.get_batch(tenant.tenant_id, batch_id) if re.match(BATCH_ID_PATTERN, batch_id) else None
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found", code="batch_not_found")
    if not batch.status.is_terminal:
        raise ConflictError(
            f"batch {batch_id} is {batch.status.value}: its export is written when it ends",
            code="export_not_ready",
        )
    key = export_key(tenant.tenant_id, batch_id)
    if not storage.exists(key):
        # Ended before exports existed, or its finalize has not got that far (a cancel, an expiry).
        raise ConflictError(f"the export of batch {batch_id} is not written yet", code="export_not_ready")
    return ExportResponse(
        batch_id=batch_id,
        url=storage.presign_get(key, expires_in=ttl_seconds),
        expires_at=now + timedelta(seconds=ttl_seconds),
        # One line per file of the batch.
        files=batch.total,
    )
