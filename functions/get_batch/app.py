"""GET /v1/batches/{batch_id}: status, counts and progress of one of the caller's batches."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import BatchStatusResponse
from filebatch.services.batches import get_batch_status

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
app = make_resolver()


@app.get(
    "/v1/batches/<batch_id>",
    summary="A batch's status",
    description="Status, counts per file state and progress of one of the caller's batches.",
    responses=route_responses(
        200, BatchStatusResponse, "The batch's status.", errors=(400, 401, 403, 404, 429)
    ),
    tags=["batches"],
)
@tracer.capture_method
def get_batch(batch_id: str) -> BatchStatusResponse:
    return get_batch_status(
        runtime.repository(),
        tenant_of(app),
        batch_id,
        provider=get_settings().description_provider,
        now=datetime.now(UTC),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
