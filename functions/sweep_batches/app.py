"""Scheduled (every minute): close the batches whose upload window has ended, carry out closes and
cancels that stopped half way, and announce ends whose announcement failed (see
filebatch.services.lifecycle)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.services.lifecycle import sweep

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    outcomes = sweep(
        runtime.repository(),
        runtime.storage(),
        runtime.workflow(),
        runtime.batch_events(),
        now=datetime.now(UTC),
        provider=get_settings().description_provider,
    )
    logger.info("sweep done", extra={"scheduled_at": event.time.isoformat(), "batches": outcomes})
    return {"batches": outcomes}
