"""Announcing a batch's end on the stack's event bus (models/events.py has the event's shape).

Every end is owed its announcement from the write that ends it: `repo.finish_batch` clears
`announced_at` and leaves the batch due (`due_at`, ANNOUNCE_WATCHDOG later); `announce_batch_ended`
puts the event on the bus, then marks the end announced, which takes the batch off the sweep's
index. Whatever stops in between (the bus unavailable, the function crashing), the end is
announced again: by the step when it is retried (finalize), by a repeated close or cancel, and at
the latest by the sweep once the watchdog time has passed. Announcing again is harmless: the event
id is the same."""

from __future__ import annotations

from datetime import datetime, timedelta

from filebatch.errors import ConflictError
from filebatch.models.domain import Tenant
from filebatch.models.events import DETAIL_TYPES, BatchEndedDetail, batch_event_id
from filebatch.services.batches import get_batch_status
from filebatch.services.ports import BatchEvents, BatchRepository

# How long an end may stay unannounced before the sweep announces it: far longer than the step that
# ended it takes to announce, so the sweep only repeats announcements that failed.
ANNOUNCE_WATCHDOG = timedelta(minutes=2)


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
    # Only after the put: an end whose announcement failed stays due, and is announced again.
    repo.mark_announced(tenant_id, batch_id, status=status.status, retries=status.retries, at=now)
    return detail
