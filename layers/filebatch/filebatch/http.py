"""What every API handler shares: the resolver with validation, the error body, the tenant.

Every error leaves as {"error": {"code", "message", "details"?}} with a 4xx status for bad input;
a 5xx only for faults on our side (logged with the request id). What a client sends is refused
before it can raise: bodies over the size limit (413), bodies that are not JSON by their Content-Type
(415), JSON too deep or with numbers too long to parse (400)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from filebatch.errors import FilebatchError, UnauthorizedError
from filebatch.models.api import ApiError, ApiErrorBody
from filebatch.models.domain import Tenant

logger = Logger()


# The largest request body any route accepts: the largest create request in ASCII (10,000 files,
# every field at its maximum length) is 5.7 MB as json.dumps writes it (tests/unit/test_body_limit.py),
# and API Gateway itself stops at 10 MB. Names sent as \u escapes or long UTF-8 can go over: split
# such a batch.
MAX_BODY_BYTES = 6 * 1024 * 1024
# JSON nested deeper than this is refused before Python's parser recurses into it: no request body of
# the API nests deeper than 4 levels.
MAX_JSON_DEPTH = 32
# Strings whole (their brackets do not count), and brackets.
_JSON_STRINGS_AND_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error = ApiError(error=ApiErrorBody(code=code, message=message, details=details or None))
    return error.model_dump(mode="json", exclude_none=True)


# What each status means on this API, for the published contract (docs/openapi.json).
_ERROR_MEANINGS = {
    400: "The request is malformed or does not match the schema (`malformed_json`, `validation_error`, "
    "`invalid_cursor`, `file_too_large`, `invalid_idempotency_key`, `webhook_url_refused`, "
    "`webhook_secret_missing`, `file_not_retryable`; completing a multipart upload: `parts_missing`, "
    "`invalid_part`, `invalid_part_order`, `part_too_small`, `size_mismatch`, `part_checksum_missing`; "
    "signing parts: `invalid_part`...).",
    401: "Missing or unknown API key (`unauthorized`).",
    403: "The API key has no usage plan on this API (`forbidden`): ask the operator for a new key.",
    404: "No such batch for this API key's tenant (`batch_not_found`), no such file in it "
    "(`file_not_found`), or no such route.",
    409: "The batch's state does not allow it (`batch_ended`: an ended batch takes no more uploads; "
    "`batch_not_ended`: only an ended batch can be deleted, exported or retried; `export_not_ready`: the "
    "export is written when the batch ends; `batch_not_open`, `uploads_closed`, `nothing_to_retry`, "
    "`retry_in_progress`; multipart uploads: `not_multipart`, `already_uploaded`, "
    "`file_not_awaiting_upload`, `no_upload_in_progress`, `upload_not_found`, `no_part_checksums`), or the "
    "request conflicts "
    "with an earlier one (`name_taken`, `idempotency_key_reused`, `request_in_progress`, "
    "`rotation_in_progress`).",
    413: "The request body is over the size limit (`payload_too_large`).",
    415: "The body is not `application/json` (`unsupported_media_type`).",
    429: "A limit of the API key's plan: requests per second (`throttled`, from the gateway, with "
    "`Retry-After`), requests per month (`request_quota_exceeded`), open batches (`open_batch_limit`) or "
    "files per month (`monthly_file_quota`); the last two carry `Retry-After` and "
    "`RateLimit-Limit`/`RateLimit-Remaining`/`RateLimit-Reset`.",
}


_RATE_LIMIT_HEADERS = {
    "Retry-After": {"description": "Seconds after which a retry can pass.", "schema": {"type": "integer"}},
    "RateLimit-Limit": {"description": "The plan's limit that was reached.", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "What is left of it.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until it resets.", "schema": {"type": "integer"}},
}


def route_responses(
    success: int, model: type[BaseModel], description: str, *, errors: tuple[int, ...]
) -> dict[int, Any]:
    """A route's documented responses (the published contract): its success status and body, and its
    error statuses, all in the API's error shape."""
    responses: dict[int, Any] = {
        success: {"description": description, "content": {content_types.APPLICATION_JSON: {"model": model}}}
    }
    for status in errors:
        responses[status] = {
            "description": _ERROR_MEANINGS[status],
            "content": {content_types.APPLICATION_JSON: {"model": ApiError}},
        }
        if status == 429:
            responses[status]["headers"] = _RATE_LIMIT_HEADERS
    return responses


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code, message, details),
        headers=headers or None,
    )


def parse_json_body(text: str) -> Any:
    """json.loads for request bodies: every way a text can fail to become a value is a
    JSONDecodeError (which the resolver answers with 400 malformed_json), never another exception."""
    depth = 0
    for token in _JSON_STRINGS_AND_BRACKETS.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise json.JSONDecodeError(f"nested deeper than {MAX_JSON_DEPTH} levels", text, token.start())
        elif bracket in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as error:
        # e.g. an integer of more than 4,300 digits: a ValueError that is not a JSONDecodeError.
        raise json.JSONDecodeError(str(error), text, 0) from None


class FilebatchResolver(APIGatewayRestResolver):
    """Powertools' REST resolver, with the request checks that must come before its own parsing."""

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        refused = _refuse_body(event)
        if refused is not None:
            return refused
        return super().resolve(_with_json_content_type(event), context)


def _refuse_body(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """A proxy response refusing the request's body (413, 415), or None when it may be parsed."""
    body = event.get("body")
    if not body:
        return None
    size = len(body) if not event.get("isBase64Encoded") else len(body) * 3 // 4
    if size > MAX_BODY_BYTES:
        return _proxy_error(413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES:,} bytes")
    content_type = _header(event, "content-type")
    if content_type is not None and _essence(content_type) != content_types.APPLICATION_JSON:
        return _proxy_error(
            415, "unsupported_media_type", f"send the body as application/json, not {content_type[:100]!r}"
        )
    if event.get("isBase64Encoded"):
        try:
            base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _proxy_error(400, "malformed_json", "the request body is not UTF-8 JSON")
    return None


def _with_json_content_type(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """Content types are case-insensitive and take parameters ("Application/JSON; charset=utf-8");
    Powertools compares the header to "application/json" literally, so it is given that."""
    content_type = _header(event, "content-type")
    if content_type is None or content_type == content_types.APPLICATION_JSON:
        return event
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    headers["Content-Type"] = content_types.APPLICATION_JSON
    multi["Content-Type"] = [content_types.APPLICATION_JSON]
    return {**event, "headers": headers, "multiValueHeaders": multi}


def _header(event: Mapping[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name and isinstance(value, str):
            return value
    return None


def _essence(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _proxy_error(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "multiValueHeaders": {},
        "body": json.dumps(error_body(code, message)),
        "isBase64Encoded": False,
    }


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
    app = FilebatchResolver(enable_validation=True, json_body_deserializer=parse_json_body)

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
        return error_response(error.http_status, error.code, error.message, headers=error.headers)

    @app.not_found
    def _no_route(_: Exception) -> Response[Any]:
        return error_response(404, "route_not_found", "no such route")

    return app


def tenant_of(app: APIGatewayRestResolver) -> Tenant:
    """The tenant and plan the authorizer resolved. API Gateway only calls us after it did."""
    context = app.current_event.request_context.authorizer.raw_event or {}
    tenant_id, plan = context.get("tenant_id"), context.get("plan")
    if not tenant_id or not plan:
        raise UnauthorizedError("request carries no tenant (is the authorizer configured?)")
    return Tenant(tenant_id=tenant_id, plan=plan)
