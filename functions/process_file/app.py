"""Workflow step: verify one uploaded file (size, SHA-256, type from magic bytes, basic metadata)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.models.workflow import FileTask
from filebatch.services.processing import process_file

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=FileTask)
def lambda_handler(event: FileTask, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(batch_id=event.batch_id, file_id=event.file_id)
    processed = process_file(runtime.repository(), runtime.storage(), event, now=datetime.now(UTC))
    logger.info("file verified", extra={"detected": processed.facts.detected_content_type})
    return processed.model_dump(mode="json")
