"""Composition root: builds adapters from settings on first use and keeps them for the life of the
execution environment. Nothing here runs at import time (boto3 itself is imported lazily)."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from filebatch.config import get_settings
from filebatch.errors import FilebatchError

# Types only: every handler imports this module, and most of them need neither the description
# services nor every model the ports name (importing them builds their pydantic schemas at cold start).
if TYPE_CHECKING:
    from filebatch.services.batches import UploadLimits
    from filebatch.services.description import DescriptionProvider, FaultInjection, ProviderFactory
    from filebatch.services.multipart import MultipartPolicy
    from filebatch.services.ports import (
        BatchEvents,
        BatchRepository,
        ConverseModel,
        CursorKeys,
        DeliveryQueue,
        HostResolver,
        IdempotentCalls,
        JobQueue,
        ObjectStorage,
        WebhookTransport,
        WorkflowStarter,
    )
    from filebatch.services.webhooks import WebhookPolicy

# What each handler's Tracer patches for X-Ray: the AWS clients, which are botocore's. Powertools'
# default (patch_all) imports and patches every library X-Ray supports that is installed (sqlite3 and
# http.client on Lambda's runtime) at cold start; a function making other calls worth tracing adds
# them (deliver_webhook: httplib).
TRACED_MODULES = ("botocore",)

# Bedrock client timeouts (seconds). One model call must fit the describe function's Timeout (120 s,
# template.yaml) with room for the download and the image work around it; a static test holds them
# to that. Step Functions retries a timed-out call (RetryableDescriptionError).
BEDROCK_CONNECT_TIMEOUT_S = 5
BEDROCK_READ_TIMEOUT_S = 75


def _client_config(service: str) -> Any:
    from botocore.config import Config

    # Presigned URLs must be SigV4; standard retry mode backs off on throttling.
    if service == "s3":
        # The process step hashes every byte it reads and compares a declared SHA-256 itself
        # (checksum_mismatch). botocore validating the object's stored checksum on GET as well would
        # hash the object twice, and where the store kept a declared checksum without verifying it
        # (moto) would turn a mismatch into a retryable read error before the process step can say so.
        return Config(
            retries={"mode": "standard", "max_attempts": 3},
            signature_version="s3v4",
            response_checksum_validation="when_required",
        )
    return Config(retries={"mode": "standard", "max_attempts": 3})


@cache
def _boto3_client(service: str) -> Any:
    import boto3

    return boto3.client(service, config=_client_config(service))  # type: ignore[call-overload]


@lru_cache(maxsize=1)
def repository() -> BatchRepository:
    import boto3

    from filebatch.adapters.dynamodb import DynamoBatchRepository

    table = boto3.resource("dynamodb", config=_client_config("dynamodb")).Table(get_settings().table_name)
    return DynamoBatchRepository(table)


@lru_cache(maxsize=1)
def storage() -> ObjectStorage:
    from filebatch.adapters.s3 import S3ObjectStorage

    return S3ObjectStorage(get_settings().bucket_name, _boto3_client("s3"))


@lru_cache(maxsize=1)
def workflow() -> WorkflowStarter:
    from filebatch.adapters.stepfunctions import StepFunctionsStarter

    arn = get_settings().state_machine_arn
    if not arn:
        raise FilebatchError("STATE_MACHINE_ARN is not set for this function", code="misconfigured")
    return StepFunctionsStarter(arn, _boto3_client("stepfunctions"))


def upload_limits() -> UploadLimits:
    from filebatch.services.batches import UploadLimits

    settings = get_settings()
    return UploadLimits(
        max_files=settings.max_files_per_batch,
        max_file_bytes=settings.max_file_bytes,
        url_ttl_seconds=settings.upload_url_ttl_seconds,
        grace_seconds=settings.upload_grace_seconds,
        multipart_threshold_bytes=settings.multipart_threshold_bytes,
    )


def multipart_policy() -> MultipartPolicy:
    """Which files upload in parts (MULTIPART_THRESHOLD_BYTES, from the template)."""
    from filebatch.services.multipart import MultipartPolicy

    return MultipartPolicy(get_settings().multipart_threshold_bytes)


@lru_cache(maxsize=1)
def job_queue() -> JobQueue:
    from filebatch.adapters.sqs import SqsJobQueue

    url = get_settings().batch_jobs_queue_url
    if not url:
        raise FilebatchError("BATCH_JOBS_QUEUE_URL is not set for this function", code="misconfigured")
    return SqsJobQueue(url, _boto3_client("sqs"))


@lru_cache(maxsize=1)
def cursor_keys() -> CursorKeys:
    from filebatch.adapters.secrets import SecretsManagerCursorKeys

    secret = get_settings().cursor_secret_arn
    if not secret:
        raise FilebatchError("CURSOR_SECRET_ARN is not set for this function", code="misconfigured")
    return SecretsManagerCursorKeys(secret, _boto3_client("secretsmanager"))


@lru_cache(maxsize=1)
def idempotent_calls() -> IdempotentCalls:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from filebatch.adapters.idempotency import PowertoolsIdempotency

    table = get_settings().idempotency_table_name
    if not table:
        raise FilebatchError("IDEMPOTENCY_TABLE_NAME is not set for this function", code="misconfigured")
    # The table's key is Powertools' default (`id`), its TTL attribute `expiration` (template.yaml).
    return PowertoolsIdempotency(
        DynamoDBPersistenceLayer(table_name=table, boto3_client=_boto3_client("dynamodb"))
    )


def bedrock_client_config(
    connect_timeout: float = BEDROCK_CONNECT_TIMEOUT_S, read_timeout: float = BEDROCK_READ_TIMEOUT_S
) -> Any:
    from botocore.config import Config

    # One attempt: the state machine's Retry is the retry policy (backoff, full jitter, a budget per
    # error class); retrying here as well would multiply attempts and hide throttling from it.
    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


@lru_cache(maxsize=1)
def bedrock_client() -> Any:
    import boto3

    # No region: the function's own (AWS_REGION), unless BedrockRegion names another.
    return boto3.client(
        "bedrock-runtime", region_name=get_settings().bedrock_region, config=bedrock_client_config()
    )


@lru_cache(maxsize=1)
def bedrock_model() -> ConverseModel:
    from filebatch.adapters.bedrock import BedrockConverseModel

    model_id = get_settings().bedrock_model_id
    if not model_id:
        raise FilebatchError("BEDROCK_MODEL_ID is not set for this function", code="misconfigured")
    return BedrockConverseModel(model_id, bedrock_client())


def _local_provider() -> DescriptionProvider:
    from filebatch.media.local_provider import LocalDescriptionProvider

    return LocalDescriptionProvider()


def _bedrock_provider() -> DescriptionProvider:
    from filebatch.services.bedrock_provider import BedrockDescriptionProvider

    return BedrockDescriptionProvider(bedrock_model())


# DESCRIPTION_PROVIDER (template parameter DescriptionProvider) → factory. Imports are deferred so
# that a function loads only the provider it uses.
PROVIDERS: dict[str, ProviderFactory] = {"local": _local_provider, "bedrock": _bedrock_provider}


@lru_cache(maxsize=1)
def description_provider() -> DescriptionProvider:
    from filebatch.services.description import provider_named

    return provider_named(get_settings().description_provider, PROVIDERS)


@lru_cache(maxsize=1)
def fault_injection() -> FaultInjection | None:
    from filebatch.services.description import FaultInjection

    return FaultInjection.parse(get_settings().describe_fault_injection)


# -- stream EVENTS ------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def batch_events() -> BatchEvents:
    from filebatch.adapters.events import EventBridgeBatchEvents

    bus = get_settings().event_bus_name
    if not bus:
        raise FilebatchError("EVENT_BUS_NAME is not set for this function", code="misconfigured")
    return EventBridgeBatchEvents(bus, _boto3_client("events"))


@lru_cache(maxsize=1)
def delivery_queue() -> DeliveryQueue:
    from filebatch.adapters.sqs import SqsDeliveryQueue

    url = get_settings().webhook_queue_url
    if not url:
        raise FilebatchError("WEBHOOK_QUEUE_URL is not set for this function", code="misconfigured")
    return SqsDeliveryQueue(url, _boto3_client("sqs"))


@lru_cache(maxsize=1)
def host_resolver() -> HostResolver:
    from filebatch.adapters.webhooks import SocketHostResolver

    return SocketHostResolver()


@lru_cache(maxsize=1)
def webhook_transport() -> WebhookTransport:
    from filebatch.adapters.webhooks import HttpWebhookTransport

    return HttpWebhookTransport()


def webhook_policy() -> WebhookPolicy:
    """What webhooks this deployment may call (WEBHOOK_ALLOW_LOOPBACK, from the template)."""
    from filebatch.services.webhooks import WebhookPolicy

    return WebhookPolicy(resolver=host_resolver(), allow_loopback=get_settings().webhook_allow_loopback)
