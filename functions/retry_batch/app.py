"""POST /v1/batches/{batch_id}/retry: run an ended batch's failed files again, in a new execution."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import RetryRequest, RetryResponse
from filebatch.services.batches import require_batch
from filebatch.services.lifecycle import retry_batch

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
app = make_resolver()


@app.post(
    "/v1/batches/<batch_id>/retry",
    status_code=202,
    summary="Retry failed files",
    description="On an ended batch: runs again every failed file whose failure is retryable (body `{}`), "
    'or the listed ones (`{"file_ids": [...]}`, each must be), in a new execution `<batch_id>-r<n>`.',
    responses=route_responses(
        202, RetryResponse, "The retry, started.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["batches"],
)
@tracer.capture_method
def post_retry(batch_id: str, request: Annotated[RetryRequest, Body()]) -> Response[RetryResponse]:
    repo = runtime.repository()
    batch = require_batch(repo, tenant_of(app), batch_id)
    retry = retry_batch(
        repo,
        runtime.storage(),
        runtime.workflow(),
        runtime.batch_events(),
        batch,
        request,
        now=datetime.now(UTC),
        provider=get_settings().description_provider,
    )
    logger.info(
        "batch retried", extra={"batch_id": batch_id, "retry": retry.retry, "files": len(retry.file_ids)}
    )
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=retry)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
