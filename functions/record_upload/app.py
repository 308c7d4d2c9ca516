"""SQS consumer of S3 "Object Created" events (S3 → EventBridge → SQS): marks files uploaded and
starts the batch's execution once all have arrived. Failed records are reported individually and
come back through SQS; after maxReceiveCount they land in the dead-letter queue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel, SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from filebatch import runtime
from filebatch.services.uploads import record_upload

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)


class UploadEventRecord(SqsRecordModel):
    """An SQS message whose body is the EventBridge event of an S3 "Object Created"."""

    body: Json[S3EventNotificationEventBridgeModel]


# A record that does not parse is reported as failed: it is retried, then dead-lettered, not lost.
processor = BatchProcessor(event_type=EventType.SQS, model=UploadEventRecord)


def handle_record(record: UploadEventRecord) -> str:
    event = record.body
    # EventBridge carries S3 keys URL-encoded.
    key = unquote_plus(event.detail.object.key)
    outcome = record_upload(
        runtime.repository(),
        runtime.workflow(),
        key=key,
        size=int(event.detail.object.size or 0),
        # Present when the bucket is versioned (it is): the process and describe steps read this one.
        version_id=event.detail.object.version_id,
        now=datetime.now(UTC),
    )
    logger.info("upload event", extra={"key": key, "outcome": outcome.value})
    return outcome.value


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
