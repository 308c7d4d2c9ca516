"""POST /v1/webhooks/secret: create or rotate the tenant's webhook signing secret."""

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
from filebatch.models.api import WebhookSecretResponse
from filebatch.services.webhooks import rotate_webhook_secret

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
# The response is the secret itself: it must not reach X-Ray as response metadata (nor the logs).
app = make_resolver()


@app.post(
    "/v1/webhooks/secret",
    status_code=201,
    summary="Create or rotate the webhook secret",
    description="A new signing secret for your webhooks (Standard Webhooks, `whsec_…`). The secret it "
    "replaces keeps signing deliveries alongside it for 24 hours, so receivers can switch over. "
    "Batches can only be created with a `webhook_url` once the secret exists.",
    responses=route_responses(
        201,
        WebhookSecretResponse,
        "The new secret. It is shown only here: store it where your receiver verifies signatures.",
        errors=(400, 401, 403, 409, 429),
    ),
    tags=["webhooks"],
)
@tracer.capture_method(capture_response=False)
def post_webhook_secret() -> Response[WebhookSecretResponse]:
    tenant = tenant_of(app)
    rotated = rotate_webhook_secret(runtime.repository(), tenant.tenant_id, now=datetime.now(UTC))
    logger.info(
        "webhook secret rotated",
        extra={"tenant_id": tenant.tenant_id, "previous_valid_until": rotated.previous_secret_valid_until},
    )
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=rotated)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
