"""DELETE /v1/batches/{batch_id}: delete an ended batch. It is gone from the API at once (404 on every
route); its objects and items are purged in the background (BatchJobsQueue → run_batch_job)."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import DeleteBatchResponse
from filebatch.services.purge import delete_batch

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
app = make_resolver()


@app.delete(
    "/v1/batches/<batch_id>",
    status_code=202,
    summary="Delete a batch",
    description="Deletes an ended batch: its files, results, export and records. From this answer on the "
    "batch is gone (404 everywhere); its data is removed in the background within minutes. A batch "
    "that has not ended is refused (409 `batch_not_ended`): cancel it first.",
    responses=route_responses(
        202, DeleteBatchResponse, "The batch is being deleted.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["batches"],
)
@tracer.capture_method
def remove_batch(batch_id: str) -> Response[DeleteBatchResponse]:
    deleted = delete_batch(
        runtime.repository(), runtime.job_queue(), tenant_of(app), batch_id, now=datetime.now(UTC)
    )
    logger.info("batch deleted; purge queued", extra={"batch_id": batch_id})
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=deleted)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
