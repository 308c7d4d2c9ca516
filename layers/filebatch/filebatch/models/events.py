"""Events on the stack's EventBridge bus (`BatchEventsBus`), and what its webhook rule delivers.

Every terminal batch transition puts one event on the bus:

    source       filebatch
    detail-type  Batch Completed | Batch Completed With Errors | Batch Failed | Batch Cancelled |
                 Batch Expired
    detail       the batch's status body (GET /v1/batches/{id}), plus `tenant_id` and `event_id`

`event_id` is `<batch_id>:<retries>:<status>`: the same for every announcement of the same end, so
consumers (and webhook receivers, as `webhook-id`) can drop duplicates of an at-least-once delivery.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from filebatch.models.api import BatchStatusResponse

EVENT_SOURCE = "filebatch"

# Terminal status → detail-type. Keyed by the status's value, so that it can name ends before the
# enum has them; a unit test holds it to BatchStatus (every terminal status has a detail-type).
DETAIL_TYPES: dict[str, str] = {
    "completed": "Batch Completed",
    "completed_with_errors": "Batch Completed With Errors",
    "failed": "Batch Failed",
    "cancelled": "Batch Cancelled",
    "expired": "Batch Expired",
}


def batch_event_id(batch_id: str, retries: int, status: str) -> str:
    """Deterministic: one id per end of one run of a batch (a retried batch ends again, anew)."""
    return f"{batch_id}:{retries}:{status}"


class BatchEndedDetail(BatchStatusResponse):
    """The event's detail: the status body as the API gives it, and whose batch it is."""

    tenant_id: str
    event_id: str

    def status_body(self) -> BatchStatusResponse:
        """The status body alone: what the webhook POSTs."""
        return BatchStatusResponse.model_validate(self.model_dump(exclude={"tenant_id", "event_id"}))


class BatchEndedEvent(BaseModel):
    """The EventBridge event as a rule delivers it to an SQS target (the message body). Only what the
    webhook deliverer reads is required; EventBridge's other fields are accepted as they come."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    source: str
    detail_type: str = Field(alias="detail-type")
    time: Any = None
    detail: BatchEndedDetail
