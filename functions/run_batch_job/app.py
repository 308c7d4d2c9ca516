"""SQS consumer of the background jobs queue (BatchJobsQueue): each message is one BatchJob (its
`action` says which). Failed records are reported individually and come back through SQS, where the
job resumes; after maxReceiveCount they land in the dead-letter queue (and its alarm fires)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import Json

from filebatch import runtime
from filebatch.models.workflow import BatchJob
from filebatch.services.jobs import run_job

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)


class BatchJobRecord(SqsRecordModel):
    """An SQS message whose body is one BatchJob as JSON."""

    body: Json[BatchJob]


# A record that does not parse is reported as failed: it is retried, then dead-lettered, not lost.
processor = BatchProcessor(event_type=EventType.SQS, model=BatchJobRecord)


def handle_record(record: BatchJobRecord) -> str:
    job = record.body
    outcome = run_job(job, repo=runtime.repository(), storage=runtime.storage())
    logger.info(
        "batch job done",
        extra={
            "action": outcome.action,
            "batch_id": outcome.batch_id,
            "outcome": outcome.outcome,
            **outcome.counts,
        },
    )
    return outcome.outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
