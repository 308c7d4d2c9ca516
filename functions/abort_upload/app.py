"""POST /v1/batches/{batch_id}/files/{file_id}/abort: aborts a file's multipart upload (S3 drops its
parts); the file stays awaiting upload and the next parts request starts a fresh upload."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import AbortUploadResponse
from filebatch.services.multipart import abort_upload

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
app = make_resolver()


@app.post(
    "/v1/batches/<batch_id>/files/<file_id>/abort",
    summary="Abort a multipart upload",
    description="S3 drops the upload's parts. The file still awaits upload: the next GET .../parts "
    "(or .../uploads) starts a fresh upload with a new `upload_id`.",
    status_code=202,
    responses=route_responses(
        202, AbortUploadResponse, "The upload is aborted.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["uploads"],
)
@tracer.capture_method
def post_abort(batch_id: str, file_id: str) -> Response[AbortUploadResponse]:
    aborted = abort_upload(
        runtime.repository(),
        runtime.storage(),
        tenant_of(app),
        batch_id,
        file_id,
        policy=runtime.multipart_policy(),
    )
    logger.info("multipart upload aborted", extra={"batch_id": batch_id, "file_id": file_id})
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=aborted)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
