"""POST /v1/batches: record a batch and its files; answer with a presigned PUT per file."""

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
from filebatch.models.api import CreateBatchRequest, CreateBatchResponse
from filebatch.services.batches import create_batch
from filebatch.services.cursors import CursorSigner

logger = Logger()
tracer = Tracer()
# Responses here carry presigned PUT URLs, which let anyone holding them upload: Tracer would
# otherwise add each response to the trace as metadata, putting them in X-Ray for anyone with
# read access to traces. Timings and errors are still traced.
app = make_resolver()


@app.post(
    "/v1/batches",
    status_code=201,
    summary="Create a batch",
    description="Declare up to 10,000 files; the answer has one presigned upload per file (the first "
    "1,000; the rest at the uploads route). Processing starts when every file has arrived.",
    responses=route_responses(
        201,
        CreateBatchResponse,
        "The batch, and how to upload its files.",
        errors=(400, 401, 403, 413, 415, 429),
    ),
    tags=["batches"],
)
@tracer.capture_method(capture_response=False)
def post_batch(request: Annotated[CreateBatchRequest, Body()]) -> Response[CreateBatchResponse]:
    settings = get_settings()
    tenant = tenant_of(app)
    created = create_batch(
        runtime.repository(),
        runtime.storage(),
        tenant,
        request,
        limits=runtime.upload_limits(),
        retention_days=settings.retention_days,
        cursors=CursorSigner(runtime.cursor_keys()),
        now=datetime.now(UTC),
        webhooks=runtime.webhook_policy(),
    )
    logger.info("batch created", extra={"batch_id": created.batch_id, "files": len(created.files)})
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
