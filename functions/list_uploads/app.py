"""GET /v1/batches/{batch_id}/uploads?limit=&cursor=: fresh presigned PUTs for the files still
awaiting upload (batches larger than one page, and URLs that expired before the upload)."""

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
from filebatch.models.api import PageQuery, UploadsPage
from filebatch.services.batches import list_uploads
from filebatch.services.cursors import CursorSigner

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
# Responses here carry presigned PUT URLs, which let anyone holding them upload: Tracer would
# otherwise add each response to the trace as metadata, putting them in X-Ray for anyone with
# read access to traces. Timings and errors are still traced.
app = make_resolver()


@app.get(
    "/v1/batches/<batch_id>/uploads",
    summary="Upload instructions",
    description="Fresh presigned uploads for the batch's files still awaiting upload: the rest of a "
    "batch larger than one page, or new URLs when earlier ones expired.",
    responses=route_responses(
        200, UploadsPage, "One page of upload instructions.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["uploads"],
)
@tracer.capture_method(capture_response=False)
def get_uploads(
    batch_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> UploadsPage:
    return list_uploads(
        runtime.repository(),
        runtime.storage(),
        tenant_of(app),
        batch_id,
        PageQuery(limit=limit, cursor=cursor),
        cursors=CursorSigner(runtime.cursor_keys()),
        limits=runtime.upload_limits(),
        now=datetime.now(UTC),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
