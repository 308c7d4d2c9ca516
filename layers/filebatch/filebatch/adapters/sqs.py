"""JobQueue on one SQS queue (BatchJobsQueue)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import StorageUnavailableError
from filebatch.models.workflow import BatchJob


class SqsJobQueue:
    def __init__(self, queue_url: str, client: Any) -> None:
        self._queue_url = queue_url
        self._client = client

    def enqueue(self, job: BatchJob) -> None:
        try:
            self._client.send_message(QueueUrl=self._queue_url, MessageBody=job.model_dump_json())
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise StorageUnavailableError(f"SQS send of a {job.action} job failed: {code}") from error
