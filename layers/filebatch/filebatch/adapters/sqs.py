"""SQS queues: the webhook deliveries queue (a failed attempt's message is postponed) and the
background jobs queue (BatchJobsQueue: a job is sent)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from filebatch.errors import StorageUnavailableError
from filebatch.models.workflow import BatchJob


class SqsDeliveryQueue:
    def __init__(self, queue_url: str, client: Any) -> None:
        self._queue_url = queue_url
        self._client = client

    def postpone(self, receipt_handle: str, seconds: int) -> None:
        try:
            self._client.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )
        except ClientError as error:
            # The message still comes back, after the queue's own VisibilityTimeout: retried sooner
            # than planned, not lost.
            code = error.response.get("Error", {}).get("Code", "Unknown")
            raise StorageUnavailableError(f"SQS change visibility failed: {code}") from error


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
