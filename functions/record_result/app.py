"""Workflow step: record one file's terminal result (success or caught failure), exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import RootModel

from filebatch import runtime
from filebatch.models.workflow import RecordResultInput, RecordSuccessInput
from filebatch.services.processing import record_failure, record_success

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)


class RecordResultEvent(RootModel[RecordResultInput]):
    pass


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=RecordResultEvent)
def lambda_handler(event: RecordResultEvent, context: LambdaContext) -> dict[str, Any]:
    request = event.root
    logger.append_keys(batch_id=request.file.batch_id, file_id=request.file.file_id, outcome=request.outcome)
    now = datetime.now(UTC)
    repo = runtime.repository()
    if isinstance(request, RecordSuccessInput):
        result = record_success(repo, request.file, now=now)
    else:
        result = record_failure(repo, request.file, now=now)
    logger.info("result recorded", extra={"status": result.status, "first_time": result.recorded})
    return result.model_dump(mode="json")
