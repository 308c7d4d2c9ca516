"""GET /v1/batches/{batch_id}/files/{file_id}/parts?cursor=: a multipart file's parts, a page at a
time: which S3 already holds, and fresh presigned URLs for the others (resuming an upload)."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import PartsPage
from filebatch.services.cursors import CursorSigner
from filebatch.services.multipart import list_parts

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
# Responses carry presigned part URLs: not put into traces (see list_uploads).
app = make_resolver()


@app.get(
    "/v1/batches/<batch_id>/files/<file_id>/parts",
    summary="Parts of a multipart upload",
    description="One page of a multipart file's parts: those S3 already holds (`uploaded`, with their "
    "ETags: do not send them again) and fresh presigned PUTs for the others (`parts`). Starts a fresh "
    "upload when the file has none (after an abort).",
    responses=route_responses(
        200, PartsPage, "One page of the file's parts.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["uploads"],
)
@tracer.capture_method(capture_response=False)
def get_parts(
    batch_id: str, file_id: str, cursor: Annotated[str | None, Query(max_length=2048)] = None
) -> PartsPage:
    return list_parts(
        runtime.repository(),
        runtime.storage(),
        tenant_of(app),
        batch_id,
        file_id,
        cursor=cursor,
        cursors=CursorSigner(runtime.cursor_keys()),
        policy=runtime.multipart_policy(),
        limits=runtime.upload_limits(),
        now=datetime.now(UTC),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
