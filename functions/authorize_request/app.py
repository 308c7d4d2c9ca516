"""API Gateway TOKEN authorizer: `Authorization: Bearer <api key>` → the key's tenant and plan.

Unknown keys raise "Unauthorized" (API Gateway answers 401). The policy allows every route of the
stage, because API Gateway caches it per token for all of them. Its usageIdentifierKey puts the
request under the usage plan of the tenant's plan (the API's ApiKeySourceType is AUTHORIZER)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.errors import UnauthorizedError
from filebatch.services.auth import authenticate

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=APIGatewayAuthorizerTokenEvent)
def lambda_handler(event: APIGatewayAuthorizerTokenEvent, context: LambdaContext) -> dict[str, Any]:
    try:
        tenant, usage_key = authenticate(runtime.repository(), event.authorization_token)
    except UnauthorizedError as error:
        logger.info("request refused", extra={"reason": error.message})
        # The exact text "Unauthorized" is what makes API Gateway answer 401.
        raise Exception("Unauthorized") from None
    arn = event.parsed_arn
    policy = APIGatewayAuthorizerResponse(
        principal_id=tenant.tenant_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context={"tenant_id": tenant.tenant_id, "plan": tenant.plan},
        usage_identifier_key=usage_key,
    )
    policy.allow_all_routes()
    return policy.asdict()
