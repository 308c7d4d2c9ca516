"""Workflow step: describe one verified file with the configured provider (DESCRIPTION_PROVIDER)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.models.workflow import DescribeFileInput
from filebatch.services.processing import describe

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=DescribeFileInput)
def lambda_handler(event: DescribeFileInput, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(batch_id=event.file.batch_id, file_id=event.file.file_id, attempt=event.attempt)
    logger.info("describing file")
    described = describe(
        runtime.storage(),
        runtime.description_provider(),
        event,
        faults=runtime.fault_injection(),
        # Only a batch that skips duplicates asks the table (no DynamoDB client on other cold starts).
        repo=runtime.repository() if event.file.dedup_fingerprint else None,
        now=datetime.now(UTC),
    )
    if described.duplicate_of is not None:
        # Issue 10: another file's description, reused; the provider was not called.
        logger.info("description reused", extra={"duplicate_of": described.duplicate_of.model_dump()})
    else:
        logger.info("file described", extra={"provider": described.description.provider})
    return described.model_dump(mode="json")
