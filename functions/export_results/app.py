"""GET /v1/batches/{batch_id}/export: a presigned download of every result of an ended batch, as JSON
Lines (one FileResult per line, in submission order)."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import ExportResponse
from filebatch.services.exports import get_export

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
# Responses here carry a presigned GET of the results, which lets anyone holding it download them:
# not added to traces (timings and errors still are).
app = make_resolver()


@app.get(
    "/v1/batches/<batch_id>/export",
    summary="Export a batch's results",
    description="A presigned URL that downloads every result of an ended batch at once: JSON Lines, one "
    "result per line in submission order (the items of the results route). 409 `export_not_ready` "
    "while the batch has not ended.",
    responses=route_responses(
        200, ExportResponse, "Where to download the results.", errors=(400, 401, 403, 404, 409, 429)
    ),
    tags=["results"],
)
@tracer.capture_method(capture_response=False)
def get_batch_export(batch_id: str) -> ExportResponse:
    return get_export(
        runtime.repository(),
        runtime.storage(),
        tenant_of(app),
        batch_id,
        ttl_seconds=get_settings().export_url_ttl_seconds,
        now=datetime.now(UTC),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
