"""GET /v1/batches?status=&name=&limit=&cursor=: the caller's batches, newest first."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import MAX_BATCHES_PER_PAGE, BatchesPage, BatchesQuery
from filebatch.models.domain import MAX_NAME_CHARS, BatchStatus
from filebatch.services.batches import list_batches
from filebatch.services.cursors import CursorSigner

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
app = make_resolver()


@app.get(
    "/v1/batches",
    summary="Your batches",
    description="Your batches, newest first, each as its status route shows it. Filter by `status` and "
    "by `name` (names starting with the text given). Page with `cursor` (opaque; `next_cursor` is null "
    "on the last page). A batch just created may take a moment to be listed.",
    responses=route_responses(200, BatchesPage, "One page of batches.", errors=(400, 401, 403, 429)),
    tags=["batches"],
)
@tracer.capture_method
def get_batches(
    status: Annotated[BatchStatus | None, Query(description="Only batches in this status.")] = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1, max_length=MAX_NAME_CHARS, description="Only batches whose name starts with this."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCHES_PER_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> BatchesPage:
    return list_batches(
        runtime.repository(),
        tenant_of(app),
        BatchesQuery(status=status, name=name, limit=limit, cursor=cursor),
        cursors=CursorSigner(runtime.cursor_keys()),
        provider=get_settings().description_provider,
        now=datetime.now(UTC),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
