"""POST /v1/batches/{batch_id}/files/{file_id}/complete: completes a file's multipart upload from
its parts' ETags (S3 CompleteMultipartUpload); the object's upload event follows as for a PUT."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import CompleteUploadRequest, CompleteUploadResponse
from filebatch.services.multipart import complete_upload

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
app = make_resolver()


@app.post(
    "/v1/batches/<batch_id>/files/<file_id>/complete",
    summary="Complete a multipart upload",
    description="Every part with the ETag its PUT answered, in ascending part number. Checked against "
    "the parts S3 holds and the declared size first (`parts_missing`, `invalid_part`, "
    "`invalid_part_order`, `part_too_small`, `size_mismatch`). Completing again after a success "
    "answers the same success.",
    status_code=202,
    responses=route_responses(
        202, CompleteUploadResponse, "The file's object exists.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["uploads"],
)
@tracer.capture_method
def post_complete(
    batch_id: str, file_id: str, body: CompleteUploadRequest
) -> Response[CompleteUploadResponse]:
    completed = complete_upload(
        runtime.repository(),
        runtime.storage(),
        tenant_of(app),
        batch_id,
        file_id,
        body,
        policy=runtime.multipart_policy(),
    )
    logger.info("multipart upload completed", extra={"batch_id": batch_id, "file_id": file_id})
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=completed)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
