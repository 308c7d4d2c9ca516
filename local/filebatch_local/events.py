"""Event sources: what Lambda's pollers do for every `Type: SQS` event in the template, and what
EventBridge does for every `Type: Schedule` event (ScheduledEvents, at the end).

SQS:
moto delivers S3 → EventBridge → rule → SQS itself, but nothing in moto polls a queue for a
function: this module does, with the template's BatchSize, batching window, partial batch
responses and MaximumConcurrency. Failed messages are left on the queue; after the queue's
VisibilityTimeout they come back, and moto moves a message to the RedrivePolicy's dead-letter
queue on the receive after maxReceiveCount (verified in tests/integration/test_local_stack.py).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from filebatch_local.concurrency import DEFAULT_SQS_CONCURRENCY
from filebatch_local.lambdas import InvokeResult
from filebatch_local.template import ScheduleSpec, SqsSourceSpec

log = logging.getLogger("filebatch_local")

# Short receive waits keep `stop()` quick; Lambda long-polls for 20 s, which only changes cost.
RECEIVE_WAIT_S = 1


def to_lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS ReceiveMessage message → one record of the event Lambda sends."""
    attributes = {k: str(v) for k, v in (message.get("Attributes") or {}).items()}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": _b64(value.get("BinaryValue")),
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": [_b64(v) for v in value.get("BinaryListValues", [])],
                "dataType": value.get("DataType"),
            }
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    for name, value in list(record["messageAttributes"].items()):
        record["messageAttributes"][name] = {k: v for k, v in value.items() if v is not None}
    return record


def _b64(value: Any) -> str | None:
    if value is None:
        return None
    return base64.b64encode(value).decode() if isinstance(value, bytes) else str(value)


def failed_message_ids(result: InvokeResult, records: list[dict[str, Any]], partial: bool) -> set[str]:
    """Which messages stay on the queue after an invocation, by Lambda's rules."""
    every = {r["messageId"] for r in records}
    if result.function_error or result.throttled:
        # A throttled batch is not lost: its messages come back after the VisibilityTimeout.
        return every
    if not partial:
        return set()
    response = result.payload
    if response is None or response == {} or response == "":
        return set()
    if not isinstance(response, dict) or not isinstance(response.get("batchItemFailures", []), list):
        return every  # an invalid partial batch response fails the whole batch
    failed: set[str] = set()
    for item in response.get("batchItemFailures") or []:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in every:
            return every  # an unknown or empty identifier fails the whole batch, as Lambda does
        failed.add(identifier)
    return failed


class SqsEventSource:
    """Pollers for one mapping; each poller handles one batch at a time, so the number of
    pollers is the mapping's concurrency."""

    def __init__(
        self,
        spec: SqsSourceSpec,
        queue_url: str,
        invoke: Callable[[str, Any], InvokeResult],
        sqs_client_factory: Callable[[], Any],
        region: str,
        max_concurrency: int,
    ) -> None:
        self.spec = spec
        self.queue_url = queue_url
        self._invoke = invoke
        self._client_factory = sqs_client_factory
        self._region = region
        self._stop = threading.Event()
        self.concurrency = min(spec.maximum_concurrency or DEFAULT_SQS_CONCURRENCY, max_concurrency)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if not self.spec.enabled:
            return
        for index in range(self.concurrency):
            thread = threading.Thread(
                target=self._poll,
                name=f"sqs-{self.spec.function_logical_id}-{index}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=RECEIVE_WAIT_S + 5)

    def _receive(self, sqs: Any, count: int) -> list[dict[str, Any]]:
        response = sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, count),
            WaitTimeSeconds=RECEIVE_WAIT_S,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages") or [])

    def _collect_batch(self, sqs: Any) -> list[dict[str, Any]]:
        # Lambda fills a batch until BatchSize or the batching window ends, whichever is first.
        messages = self._receive(sqs, self.spec.batch_size)
        if not messages:
            return []
        window_ends = time.monotonic() + self.spec.batching_window_s
        while (
            len(messages) < self.spec.batch_size
            and time.monotonic() < window_ends
            and not self._stop.is_set()
        ):
            messages += self._receive(sqs, self.spec.batch_size - len(messages))
        return messages

    def _poll(self) -> None:
        sqs = self._client_factory()
        while not self._stop.is_set():
            try:
                messages = self._collect_batch(sqs)
                if messages:
                    self._deliver(sqs, messages)
            except Exception as error:
                if self._stop.is_set():
                    return
                code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
                if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                    # The queue is gone (its stack was reset): nothing will arrive on it again.
                    log.warning(
                        "%s: queue %s is gone; poller stops", self.spec.function_logical_id, self.queue_url
                    )
                    return
                log.exception("%s: SQS poller error (retrying)", self.spec.function_logical_id)
                self._stop.wait(1)

    def _deliver(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        records = [to_lambda_record(m, self.spec.queue_arn, self._region) for m in messages]
        result = self._invoke(self.spec.function_logical_id, {"Records": records})
        failed = failed_message_ids(result, records, self.spec.report_batch_item_failures)
        done = [r for r in records if r["messageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
        if failed:
            log.info(
                "%s: %d of %d messages left on the queue (retried after its VisibilityTimeout)",
                self.spec.function_logical_id,
                len(failed),
                len(records),
            )


def scheduled_event(rule_arn: str, account_id: str, region: str, at: datetime) -> dict[str, Any]:
    """The event EventBridge sends a rule's target on schedule ("Scheduled Event", empty detail)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class ScheduledEvents:
    """One timer per `Type: Schedule` event: the function is invoked every `period_s`, the first time
    one period after start, as EventBridge invokes a rule's target (asynchronously: a failed or
    throttled invocation is logged, and the next tick comes anyway)."""

    def __init__(
        self,
        spec: ScheduleSpec,
        invoke: Callable[[str, Any], InvokeResult],
        *,
        account_id: str,
        region: str,
    ) -> None:
        self.spec = spec
        self._invoke = invoke
        self._rule_arn = f"arn:aws:events:{region}:{account_id}:rule/{spec.rule_name}"
        self._account_id = account_id
        self._region = region
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.invocations = 0

    def start(self) -> None:
        if not self.spec.enabled:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"schedule-{self.spec.function_logical_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.spec.period_s):
            event = scheduled_event(self._rule_arn, self._account_id, self._region, datetime.now(UTC))
            try:
                result = self._invoke(self.spec.function_logical_id, event)
                self.invocations += 1
                if result.function_error or result.throttled:
                    log.warning(
                        "%s: scheduled invocation failed: %s",
                        self.spec.function_logical_id,
                        result.payload,
                    )
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s: scheduled invocation failed", self.spec.function_logical_id)
