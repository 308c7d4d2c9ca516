"""ConverseModel on Amazon Bedrock's Converse API (bedrock-runtime).

Every failure becomes one of the two exceptions the state machine knows, with a stable code: the
workflow's Retry (backoff, full jitter) is the only retry, so the client makes one attempt
(runtime.bedrock_client_config) and this module only classifies.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from filebatch.errors import FilebatchError, PermanentDescriptionError, RetryableDescriptionError

# Converse's error codes (bedrock-runtime service model) that may pass on a later attempt → our code.
RETRYABLE_ERRORS: dict[str, str] = {
    "ThrottlingException": "provider_throttled",
    "ServiceUnavailableException": "provider_unavailable",
    "InternalServerException": "provider_unavailable",
    "ModelTimeoutException": "provider_timeout",
    "ModelNotReadyException": "provider_not_ready",
    # HTTP 424, "an error while processing the model": not caused by our request as such.
    "ModelErrorException": "provider_model_error",
}
# The deployment cannot work until someone changes it: model access, the model id, the IAM policy.
MISCONFIGURATION_ERRORS = frozenset({"AccessDeniedException", "ResourceNotFoundException"})
# The model refused this request: for us that means this file's content (the request shape is ours
# and the same for every file).
REJECTED_INPUT_ERRORS = frozenset({"ValidationException"})


class BedrockConverseModel:
    def __init__(self, model_id: str, client: Any) -> None:
        """`client` is a boto3 bedrock-runtime client."""
        self._model_id = model_id
        self._client = client

    @property
    def model_id(self) -> str:
        return self._model_id

    def converse(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._client.converse(modelId=self._model_id, **request)
        except ClientError as error:
            raise classify(error, self._model_id) from error
        except (ReadTimeoutError, ConnectTimeoutError) as error:
            raise RetryableDescriptionError(
                f"Bedrock did not answer in time ({error})", code="provider_timeout"
            ) from error
        except (EndpointConnectionError, ConnectionClosedError) as error:
            raise RetryableDescriptionError(
                f"Bedrock could not be reached ({error})", code="provider_unavailable"
            ) from error
        except NoCredentialsError as error:
            raise PermanentDescriptionError(
                f"the deployment is misconfigured: no AWS credentials to call Bedrock ({error})",
                code="provider_misconfigured",
            ) from error
        response.pop("ResponseMetadata", None)
        return response


def classify(error: ClientError, model_id: str) -> FilebatchError:
    """The project's exception for a Converse error response."""
    details = error.response.get("Error", {})
    code = str(details.get("Code", "Unknown"))
    message = str(details.get("Message", "")) or "no message"
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    said = f"Bedrock {code} for model {model_id}: {message}"
    if code in RETRYABLE_ERRORS:
        return RetryableDescriptionError(said, code=RETRYABLE_ERRORS[code])
    if code in MISCONFIGURATION_ERRORS:
        return PermanentDescriptionError(
            f"the deployment is misconfigured ({said}); check BedrockModelId and BedrockRegion, the "
            "model's access in the Bedrock console, and the describe function's IAM policy",
            code="provider_misconfigured",
        )
    if code in REJECTED_INPUT_ERRORS:
        return PermanentDescriptionError(said, code="provider_rejected_input")
    # An error code this version does not know: the HTTP status says whose fault it is.
    if status == 429 or status >= 500:
        return RetryableDescriptionError(said, code="provider_unavailable")
    return PermanentDescriptionError(said, code="provider_error")
