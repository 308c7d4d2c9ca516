"""POST /v1/batches/{batch_id}/files/{file_id}/parts: presigned part URLs of a multipart upload with
part checksums, each signing the SHA-256 the client computed for that part (S3 refuses other bytes)."""

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
from filebatch.models.api import SignedParts, SignPartsRequest
from filebatch.services.multipart import sign_upload_parts

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
# Responses carry presigned part URLs: not put into traces (see list_uploads).
app = make_resolver()


@app.post(
    "/v1/batches/<batch_id>/files/<file_id>/parts",
    summary="Sign parts with their checksums",
    description="For a multipart upload with `part_checksum` (the file declared `sha256`): up to 100 parts, "
    "each with the SHA-256 of its bytes, get presigned PUTs that sign that digest "
    "(`x-amz-checksum-sha256`; send the returned headers), so S3 refuses a part whose bytes differ. "
    "`invalid_part` for a part number beyond the file's parts or listed twice, `no_part_checksums` for "
    "a file without part checksums (GET .../parts signs its parts). Starts a fresh upload when the "
    "file has none (after an abort).",
    # 201: each call creates presigned PUTs (and, after an abort, a fresh upload).
    status_code=201,
    responses=route_responses(
        201, SignedParts, "The parts' presigned PUTs.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["uploads"],
)
@tracer.capture_method(capture_response=False)
def post_parts(batch_id: str, file_id: str, body: SignPartsRequest) -> Response[SignedParts]:
    signed = sign_upload_parts(
        runtime.repository(),
        runtime.storage(),
        tenant_of(app),
        batch_id,
        file_id,
        body,
        policy=runtime.multipart_policy(),
        limits=runtime.upload_limits(),
        now=datetime.now(UTC),
    )
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=signed)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
