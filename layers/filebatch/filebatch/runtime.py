"""Composition root: builds adapters from settings on first use and keeps them for the life of the
execution environment. Nothing here runs at import time."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from filebatch.config import get_settings
from filebatch.services.description import DescriptionProvider, FaultInjection, provider_named


@cache
def _boto3_client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 3}, signature_version="s3v4" if service == "s3" else None
    )
    return boto3.client(service, config=config)  # type: ignore[call-overload]


@lru_cache(maxsize=1)
def repository() -> Any:
    import boto3

    from filebatch.adapters.dynamodb import DynamoBatchRepository

    return DynamoBatchRepository(boto3.resource("dynamodb").Table(get_settings().table_name))


@lru_cache(maxsize=1)
def storage() -> Any:
    from filebatch.adapters.s3 import S3ObjectStorage

    return S3ObjectStorage(get_settings().bucket_name, _boto3_client("s3"))


@lru_cache(maxsize=1)
def workflow() -> Any:
    from filebatch.adapters.stepfunctions import StepFunctionsStarter
    from filebatch.errors import FilebatchError

    arn = get_settings().state_machine_arn
    if not arn:
        raise FilebatchError("STATE_MACHINE_ARN is not set for this function", code="misconfigured")
    return StepFunctionsStarter(arn, _boto3_client("stepfunctions"))


@lru_cache(maxsize=1)
def description_provider() -> DescriptionProvider:
    return provider_named(get_settings().description_provider)


@lru_cache(maxsize=1)
def fault_injection() -> FaultInjection | None:
    return FaultInjection.parse(get_settings().describe_fault_injection)
