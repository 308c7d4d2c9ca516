"""IdempotentCalls on Powertools' Idempotency utility, with its DynamoDB persistence layer.

Records are keyed `<scope>#<sha256 of [tenant, key]>`: the tenant is part of what is hashed, so two
tenants using the same Idempotency-Key never meet. The payload's hash is kept with the record
(payload validation): the same key with another payload is refused, never answered with another
request's response. Answers are kept compressed (an item holds 400 KB; a create answer with 1,000
presigned URLs is ~1.5 MB of JSON and ~10 times less compressed); an answer that still does not fit
is kept as its `brief` instead.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.serialization.base import BaseIdempotencySerializer

from filebatch.errors import ConflictError, StorageUnavailableError

IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
# What one record may keep of an answer (base64 text), below DynamoDB's 400 KB item size with room
# for the key, hashes and timestamps.
MAX_KEPT_CHARS = 350_000


def idempotency_config() -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="[tenant_id, idempotency_key]",
        payload_validation_jmespath="payload",
        expires_after_seconds=IDEMPOTENCY_WINDOW_SECONDS,
        hash_function="sha256",
    )


class _KeptAnswer(BaseIdempotencySerializer):
    """The answer as a record keeps it: compressed JSON, or its brief when that is still too large."""

    def __init__(self, brief: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self._brief = brief

    def to_dict(self, data: Any) -> dict[str, Any]:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        packed = base64.b64encode(zlib.compress(text, 6)).decode()
        return {"zlib": packed} if len(packed) <= MAX_KEPT_CHARS else {"brief": self._brief(data)}

    def from_dict(self, data: dict[str, Any]) -> Any:
        if "zlib" in data:
            return json.loads(zlib.decompress(base64.b64decode(data["zlib"])))
        return data["brief"]


class PowertoolsIdempotency:
    def __init__(self, persistence: BasePersistenceLayer, config: IdempotencyConfig | None = None) -> None:
        self._persistence = persistence
        self._config = config or idempotency_config()

    def once(
        self,
        scope: str,
        *,
        tenant_id: str,
        key: str,
        payload: dict[str, Any],
        call: Callable[[], dict[str, Any]],
        brief: Callable[[dict[str, Any]], dict[str, Any]],
        context: Any = None,
    ) -> dict[str, Any]:
        if context is not None:
            self._config.register_lambda_context(context)

        @idempotent_function(
            data_keyword_argument="request",
            persistence_store=self._persistence,
            config=self._config,
            output_serializer=_KeptAnswer(brief),
            key_prefix=scope,
        )
        def run(request: dict[str, Any]) -> dict[str, Any]:
            return call()

        try:
            answer: dict[str, Any] = run(
                request={"tenant_id": tenant_id, "idempotency_key": key, "payload": payload}
            )
        except IdempotencyValidationError:
            raise ConflictError(
                "this Idempotency-Key was used with another request body in the last 24 hours; use a new key",
                code="idempotency_key_reused",
            ) from None
        except IdempotencyAlreadyInProgressError:
            raise ConflictError(
                "a request with this Idempotency-Key is still being processed; retry it shortly",
                code="request_in_progress",
                headers={"Retry-After": "1"},
            ) from None
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as error:
            raise StorageUnavailableError(f"idempotency store failed: {type(error).__name__}") from error
        return answer
