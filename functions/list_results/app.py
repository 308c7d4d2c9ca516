"""GET /v1/batches/{batch_id}/results?status=&limit=&cursor=: per-file results, in submission order."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import PageQuery, ResultsPage
from filebatch.models.domain import FileStatus
from filebatch.services.batches import list_results
from filebatch.services.cursors import CursorSigner

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
app = make_resolver()


@app.get(
    "/v1/batches/<batch_id>/results",
    summary="A batch's results",
    description="One result per file in submission order: its description or its error. Page with "
    "`cursor` (opaque; `next_cursor` is null on the last page). With `status`, only the files in that "
    "status: a page may then hold fewer results than `limit`, even none, and still have a `next_cursor`.",
    responses=route_responses(200, ResultsPage, "One page of results.", errors=(400, 401, 403, 404, 429)),
    tags=["results"],
)
@tracer.capture_method
def get_results(
    batch_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    status: Annotated[FileStatus | None, Query(description="Only the files in this status.")] = None,
) -> ResultsPage:
    return list_results(
        runtime.repository(),
        tenant_of(app),
        batch_id,
        PageQuery(limit=limit, cursor=cursor),
        cursors=CursorSigner(runtime.cursor_keys()),
        status=status,
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
