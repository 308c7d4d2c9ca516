"""SQS consumer of batch ends routed to webhooks (event bus rule → WebhookDeliveriesQueue): POSTs each
batch's status body to its webhook_url, signed (Standard Webhooks). A failed attempt postpones its
message by the backoff for its receive count and is reported failed; after the queue's
maxReceiveCount it lands in the dead-letter queue (docs/webhooks.md has the schedule)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.models.events import BatchEndedEvent
from filebatch.services.webhooks import WebhookDeliveryError, deliver_webhook

logger = Logger()
# httplib too: the webhook POSTs themselves go through http.client, and their traces matter here.
tracer = Tracer(patch_modules=(*runtime.TRACED_MODULES, "httplib"))


class WebhookDeliveryRecord(SqsRecordModel):
    """An SQS message whose body is the EventBridge event of a batch's end."""

    body: Json[BatchEndedEvent]


# A record that does not parse is reported as failed: it is retried, then dead-lettered, not lost.
processor = BatchProcessor(event_type=EventType.SQS, model=WebhookDeliveryRecord)


def handle_record(record: WebhookDeliveryRecord) -> str:
    event = record.body.detail
    receive_count = int(record.attributes.ApproximateReceiveCount)
    log = {"batch_id": event.batch_id, "webhook_id": event.event_id, "attempt": receive_count}
    try:
        outcome = deliver_webhook(
            runtime.repository(),
            runtime.webhook_transport(),
            runtime.delivery_queue(),
            event,
            receipt_handle=record.receiptHandle,
            receive_count=receive_count,
            policy=runtime.webhook_policy(),
            retry_base_s=get_settings().webhook_retry_base_seconds,
            now=datetime.now(UTC),
            jitter=random.random(),  # spreads retries; not a secret
        )
    except WebhookDeliveryError as failed:
        logger.warning("webhook not delivered", extra={**log, "reason": failed.message})
        raise
    logger.info("webhook attempt", extra={**log, "outcome": outcome.value})
    return outcome.value


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
