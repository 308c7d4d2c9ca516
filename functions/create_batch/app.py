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
from filebatch.http import make_resolver, tenant_of
from filebatch.models.api import CreateBatchRequest, CreateBatchResponse
from filebatch.services.batches import UploadLimits, create_batch

logger = Logger()
tracer = Tracer()
app = make_resolver()


@app.post("/v1/batches")
@tracer.capture_method
def post_batch(request: Annotated[CreateBatchRequest, Body()]) -> Response[CreateBatchResponse]:
    settings = get_settings()
    tenant = tenant_of(app)
    created = create_batch(
        runtime.repository(),
        runtime.storage(),
        tenant,
        request,
        limits=UploadLimits(
            max_files=settings.max_files_per_batch,
            max_file_bytes=settings.max_file_bytes,
            url_ttl_seconds=settings.upload_url_ttl_seconds,
        ),
        now=datetime.now(UTC),
    )
    logger.info("batch created", extra={"batch_id": created.batch_id, "files": len(created.files)})
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
