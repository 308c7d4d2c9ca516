"""POST /v1/batches/{batch_id}/close: no more uploads; processing starts with the files that arrived."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import BatchStatusResponse
from filebatch.services.batches import require_batch, status_of
from filebatch.services.lifecycle import close_batch

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
app = make_resolver()


@app.post(
    "/v1/batches/<batch_id>/close",
    status_code=202,
    summary="Close a batch's uploads",
    description="No more uploads: files not uploaded become `upload_expired`, and processing starts "
    "with the files that arrived (or the batch ends `expired` when none did).",
    responses=route_responses(
        202, BatchStatusResponse, "The batch, closed.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["batches"],
)
@tracer.capture_method
def post_close(batch_id: str) -> Response[BatchStatusResponse]:
    now, provider = datetime.now(UTC), get_settings().description_provider
    repo = runtime.repository()
    batch = require_batch(repo, tenant_of(app), batch_id)
    batch = close_batch(
        repo, runtime.storage(), runtime.workflow(), runtime.batch_events(), batch, now=now, provider=provider
    )
    logger.info("batch closed", extra={"batch_id": batch_id, "status": batch.status.value})
    body = status_of(batch, provider=provider, now=now)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
