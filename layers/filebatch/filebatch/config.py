"""Settings read once from the environment the template gives each function."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table_name: str = Field(min_length=1)
    bucket_name: str = Field(min_length=1)
    state_machine_arn: str | None = None
    # The secret whose value signs page cursors (current) and still verifies them (previous).
    cursor_secret_arn: str | None = None
    description_provider: str = "local"
    # The bedrock provider's model: a foundation model id or a system-defined inference profile id
    # (template parameters BedrockModelId and BedrockRegion; see docs/providers.md).
    bedrock_model_id: str | None = None
    bedrock_region: str | None = None
    # "throttle:<filename fragment>:<failing attempts>" — resilience testing, see docs/operations.md.
    describe_fault_injection: str = ""
    upload_url_ttl_seconds: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    # The upload window ends this long after the upload URLs expire (template UploadGraceSeconds).
    upload_grace_seconds: int = Field(default=300, ge=0, le=24 * 3600)
    max_files_per_batch: int = Field(default=10_000, ge=1, le=10_000)
    # Up to 50 GiB (template MaxFileBytes; docs/scaling.md says what the process step then needs).
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1, le=50 * 1024**3)
    # -- issue 10, stream MULTIPART: files declared larger upload in parts (template
    # MultipartThresholdBytes): at least S3's 5 MiB part, at most the 5 GiB of one PUT.
    multipart_threshold_bytes: int = Field(default=100 * 1024 * 1024, ge=5 * 1024**2, le=5 * 1024**3)
    # The template's RetentionDays, which also expires the bucket's objects: batch and file items get
    # a DynamoDB TTL that many days after creation, so both go away together.
    retention_days: int = Field(default=30, ge=1)
    # -- stream PURGE: the background jobs queue (DELETE queues a purge there), and how long the
    # presigned GET of a batch's results export stays valid.
    batch_jobs_queue_url: str | None = None
    export_url_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    # -- stream EVENTS: the bus batch ends are announced on; webhook delivery (template parameters
    # WebhookAllowLoopback and WebhookRetryBaseSeconds; docs/webhooks.md).
    event_bus_name: str | None = None
    webhook_allow_loopback: bool = False
    webhook_retry_base_seconds: int = Field(default=60, ge=1, le=3600)
    webhook_queue_url: str | None = None
    # Where Idempotency-Key requests are remembered for 24 hours (template IdempotencyTable).
    idempotency_table_name: str | None = None


# Environment variable → settings field. Only these are read; the rest of the environment is ignored.
_ENVIRONMENT = {
    "TABLE_NAME": "table_name",
    "BUCKET_NAME": "bucket_name",
    "STATE_MACHINE_ARN": "state_machine_arn",
    "CURSOR_SECRET_ARN": "cursor_secret_arn",
    "DESCRIPTION_PROVIDER": "description_provider",
    "BEDROCK_MODEL_ID": "bedrock_model_id",
    "BEDROCK_REGION": "bedrock_region",
    "DESCRIBE_FAULT_INJECTION": "describe_fault_injection",
    "UPLOAD_URL_TTL_SECONDS": "upload_url_ttl_seconds",
    "UPLOAD_GRACE_SECONDS": "upload_grace_seconds",
    "MAX_FILES_PER_BATCH": "max_files_per_batch",
    "MAX_FILE_BYTES": "max_file_bytes",
    "MULTIPART_THRESHOLD_BYTES": "multipart_threshold_bytes",
    "RETENTION_DAYS": "retention_days",
    "BATCH_JOBS_QUEUE_URL": "batch_jobs_queue_url",
    "EXPORT_URL_TTL_SECONDS": "export_url_ttl_seconds",
    # -- stream EVENTS
    "EVENT_BUS_NAME": "event_bus_name",
    "WEBHOOK_ALLOW_LOOPBACK": "webhook_allow_loopback",
    "WEBHOOK_RETRY_BASE_SECONDS": "webhook_retry_base_seconds",
    "WEBHOOK_QUEUE_URL": "webhook_queue_url",
    "IDEMPOTENCY_TABLE_NAME": "idempotency_table_name",
}


def settings_from(environ: dict[str, str]) -> Settings:
    values = {field: environ[name] for name, field in _ENVIRONMENT.items() if environ.get(name)}
    return Settings.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read at first use (not import) and cached for the life of the execution environment."""
    return settings_from(dict(os.environ))
