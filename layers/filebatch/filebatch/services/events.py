"""Announcing a batch's end on the stack's event bus (models/events.py has the event's shape).

Every terminal transition calls `announce_batch_ended` after `repo.finish_batch`, whether or not that
call made the transition: a retried step whose first attempt ended the batch but failed before it
announced must still announce. Announcing again is harmless: the event id is the same."""

from __future__ import annotations

from datetime import datetime

from filebatch.errors import ConflictError
from filebatch.models.domain import Tenant
from filebatch.models.events import DETAIL_TYPES, BatchEndedDetail, batch_event_id
from filebatch.services.batches import get_batch_status
from filebatch.services.ports import BatchEvents, BatchRepository


def announce_batch_ended(
    repo: BatchRepository,
    events: BatchEvents,
    tenant_id: str,
    batch_id: str,
    *,
    provider: str,
    now: datetime,
) -> BatchEndedDetail:
    """Put the batch's end on the bus: its status body as GET answers it (read consistently, so the
    status just written is the one announced). `provider` is the deployment's description provider
    (the status body names it). The event id names the run that ended (`retries`, 0 for the first),
    so a retried batch's new end is a new event and an end announced twice is the same one."""
    status = get_batch_status(
        repo, Tenant(tenant_id=tenant_id), batch_id, provider=provider, now=now, consistent=True
    )
    if not status.is_terminal:
        raise ConflictError(f"batch {batch_id} has not ended ({status.status.value})", code="batch_not_ended")
    event_id = batch_event_id(batch_id, status.retries, status.status.value)
    detail = BatchEndedDetail(**status.model_dump(), tenant_id=tenant_id, event_id=event_id)
    events.announce(
        event_id=event_id,
        detail_type=DETAIL_TYPES[status.status.value],
        detail=detail.model_dump_json(),
        at=now,
    )
    return detail
