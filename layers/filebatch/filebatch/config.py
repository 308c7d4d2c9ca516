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
    max_files_per_batch: int = Field(default=10_000, ge=1, le=10_000)
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1, le=5 * 1024**3)
    # The template's UploadRetentionDays, which also expires the bucket's objects: batch and file
    # items get a DynamoDB TTL that many days after creation, so both go away together.
    upload_retention_days: int = Field(default=30, ge=1)
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
    "MAX_FILES_PER_BATCH": "max_files_per_batch",
    "MAX_FILE_BYTES": "max_file_bytes",
    "UPLOAD_RETENTION_DAYS": "upload_retention_days",
    "IDEMPOTENCY_TABLE_NAME": "idempotency_table_name",
}


def settings_from(environ: dict[str, str]) -> Settings:
    values = {field: environ[name] for name, field in _ENVIRONMENT.items() if environ.get(name)}
    return Settings.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read at first use (not import) and cached for the life of the execution environment."""
    return settings_from(dict(os.environ))
