"""Workflow step: fail whatever the Map left unfinished, write the results export, give the batch its
terminal status and announce it on the stack's event bus."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.models.workflow import FinalizeBatchInput
from filebatch.services.processing import finalize_batch

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=FinalizeBatchInput)
def lambda_handler(event: FinalizeBatchInput, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(batch_id=event.batch_id)
    result = finalize_batch(
        runtime.repository(),
        event.tenant_id,
        event.batch_id,
        storage=runtime.storage(),
        now=datetime.now(UTC),
        events=runtime.batch_events(),
        provider=get_settings().description_provider,
        retry=event.retry,
    )
    logger.info("batch finalized", extra={"status": result.status, "swept_files": result.swept_files})
    return result.model_dump(mode="json")
