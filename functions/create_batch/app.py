"""POST /v1/batches: record a batch and its files; answer with a presigned PUT per file.

With an Idempotency-Key header the request is made once: repeated with the same body within 24 hours
it gets the first answer again (same batch, no second one)."""

# No `from __future__ import annotations` here: Powertools reads the route's annotations at run
# time to bind the body and query parameters.
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.errors import InvalidRequestError
from filebatch.http import make_resolver, route_responses, tenant_of
from filebatch.models.api import CreateBatchRequest, CreateBatchResponse
from filebatch.models.domain import Tenant
from filebatch.services.batches import DuplicateSettings, create_batch, replay_created_batch
from filebatch.services.cursors import CursorSigner
from filebatch.services.duplicates import provider_identity

logger = Logger()
tracer = Tracer(patch_modules=runtime.TRACED_MODULES)
# Responses here carry presigned PUT URLs, which let anyone holding them upload: Tracer would
# otherwise add each response to the trace as metadata, putting them in X-Ray for anyone with
# read access to traces. Timings and errors are still traced.
app = make_resolver()

# Printable ASCII, 1 to 255 characters. Checked here rather than by the parameter's schema so that a
# bad key gets its own error code (invalid_idempotency_key), not the generic validation_error.
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
IDEMPOTENCY_KEY_SCHEMA = {"minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"}
# A kept answer too large for the idempotency store is kept as this instead (see replay below).
_REPLAY = "replay_batch_id"


@app.post(
    "/v1/batches",
    status_code=201,
    summary="Create a batch",
    description="Declare up to 10,000 files; the answer has one presigned upload per file (the first "
    "1,000; the rest at the uploads route). Processing starts when every file has arrived. Optionally "
    "name the batch (unique among your batches that still exist) and attach metadata. Send an "
    "`Idempotency-Key` to retry safely: the same key and body within 24 hours answer the first "
    "response again, with no second batch.",
    responses=route_responses(
        201,
        CreateBatchResponse,
        "The batch, and how to upload its files.",
        errors=(400, 401, 403, 409, 413, 415, 429),
    ),
    tags=["batches"],
)
@tracer.capture_method(capture_response=False)
def post_batch(
    request: Annotated[CreateBatchRequest, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Your unique key for this request (printable ASCII, 1-255 characters; e.g. a "
            "UUID): the same key and body within 24 hours answer the first response again (409 "
            "`idempotency_key_reused` with another body, `request_in_progress` while the first runs).",
            json_schema_extra=IDEMPOTENCY_KEY_SCHEMA,
        ),
    ] = None,
) -> Response[CreateBatchResponse]:
    tenant = tenant_of(app)
    if idempotency_key is None:
        created = _create(tenant, request)
    else:
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise InvalidRequestError(
                "Idempotency-Key must be 1 to 255 printable ASCII characters", code="invalid_idempotency_key"
            )
        kept = runtime.idempotent_calls().once(
            "create_batch",
            tenant_id=tenant.tenant_id,
            key=idempotency_key,
            payload=request.model_dump(mode="json"),
            call=lambda: _create(tenant, request).model_dump(mode="json"),
            brief=lambda answer: {_REPLAY: answer["batch_id"]},
            context=app.lambda_context,
        )
        created = (
            _replay(tenant, kept[_REPLAY]) if _REPLAY in kept else CreateBatchResponse.model_validate(kept)
        )
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=created)


def _create(tenant: Tenant, request: CreateBatchRequest) -> CreateBatchResponse:
    settings = get_settings()
    created = create_batch(
        runtime.repository(),
        runtime.storage(),
        tenant,
        request,
        limits=runtime.upload_limits(),
        retention_days=settings.retention_days,
        cursors=CursorSigner(runtime.cursor_keys()),
        now=datetime.now(UTC),
        webhooks=runtime.webhook_policy(),
        # Built only when asked: the event bus client is not needed by other creates (cold start).
        duplicates=DuplicateSettings(
            provider=settings.description_provider,
            provider_identity=provider_identity(settings.description_provider, settings.bedrock_model_id),
            events=runtime.batch_events(),
        )
        if request.skip_duplicates
        else None,
    )
    logger.info("batch created", extra={"batch_id": created.batch_id, "files": len(created.files)})
    return created


def _replay(tenant: Tenant, batch_id: str) -> CreateBatchResponse:
    """The answer of an idempotent create that was too large to keep, read back from the batch."""
    return replay_created_batch(
        runtime.repository(),
        runtime.storage(),
        tenant,
        batch_id,
        url_ttl_seconds=get_settings().upload_url_ttl_seconds,
        cursors=CursorSigner(runtime.cursor_keys()),
        now=datetime.now(UTC),
        multipart=runtime.multipart_policy(),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
