"""What every API handler shares: the resolver with validation, the error body, the tenant.

Every error leaves as {"error": {"code", "message", "details"?}} with a 4xx status for bad input;
a 5xx only for faults on our side (logged with the request id)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from filebatch.errors import FilebatchError, UnauthorizedError
from filebatch.models.domain import Tenant

logger = Logger()


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> Response[Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"error": body})


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "location": ".".join(str(part) for part in e.get("loc", ())),
            "problem": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in error.errors()
    ]


def make_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response[Any]:
        details = _validation_details(error)
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(400, "malformed_json", "the request body is not valid JSON")
        return error_response(400, "validation_error", "the request does not match the API schema", details)

    @app.exception_handler(FilebatchError)
    def _known(error: FilebatchError) -> Response[Any]:
        if error.http_status >= 500:
            logger.exception("request failed", extra={"code": error.code})
        return error_response(error.http_status, error.code, error.message)

    @app.not_found
    def _no_route(_: Exception) -> Response[Any]:
        return error_response(404, "route_not_found", "no such route")

    return app


def tenant_of(app: APIGatewayRestResolver) -> Tenant:
    """The tenant the authorizer resolved. API Gateway only calls us after it did."""
    context = app.current_event.request_context.authorizer.raw_event or {}
    tenant_id = context.get("tenant_id")
    if not tenant_id:
        raise UnauthorizedError("request carries no tenant (is the authorizer configured?)")
    return Tenant(tenant_id=tenant_id)
