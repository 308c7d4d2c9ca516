"""Batch ends over the real local stack: the event on the stack's bus, and the webhook to a receiver on
127.0.0.1 that fails twice, then takes it (signed, the same webhook-id every time, retried after the
backoff the deliver function set with ChangeMessageVisibility); and an end the bus could not take,
announced by the sweep.

A stack of its own: WebhookRetryBaseSeconds 1, so the retries come within seconds (the local stack
itself allows loopback receivers: WebhookAllowLoopback, LOCAL_PARAMETER_OVERRIDES)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, started_stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]

TENANT = "hooks"
TEXT = b"a line of text for the webhook test\n"


@pytest.fixture(scope="module")
def hooks_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started_stack(
        tmp_path_factory.mktemp("webhooks-stack"), {"WebhookRetryBaseSeconds": "1"}, TENANT
    ) as stack:
        yield stack


@dataclass
class Receiver:
    url: str = ""
    failures_left: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = 503 if state.failures_left > 0 else 200
            state.failures_left -= 1
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/filebatch"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check, as Standard Webhooks libraries make it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    if abs(time.time() - int(headers["webhook-timestamp"])) > 300:
        return False
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split(" "))


def create(stack: Stack, webhook_url: str | None = None) -> requests.Response:
    body: dict[str, Any] = {
        "files": [{"filename": "note.txt", "size": len(TEXT), "content_type": "text/plain"}]
    }
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    return requests.post(f"{stack.api_url}/v1/batches", json=body, headers=stack.headers(), timeout=30)


def upload(created: dict[str, Any]) -> None:
    [file] = created["files"]
    put = requests.put(file["upload"]["url"], data=TEXT, headers=file["upload"]["headers"], timeout=30)
    assert put.status_code == 200, put.text


def test_a_batch_end_is_put_on_the_stacks_bus_with_its_status_body(hooks_stack: Stack) -> None:
    stack = hooks_stack
    # Given a rule of our own on the stack's bus, to a queue (as an operator would subscribe)
    bus = stack.local.outputs["BatchEventsBusName"]
    sqs, events = stack.local.client("sqs"), stack.local.client("events")
    queue_url = sqs.create_queue(QueueName="bus-watcher")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="watch-batches", EventBusName=bus, EventPattern=json.dumps({"source": ["filebatch"]})
    )
    events.put_targets(Rule="watch-batches", EventBusName=bus, Targets=[{"Id": "watcher", "Arn": queue_arn}])

    # When a batch is created, uploaded and processed
    created = create(stack)
    assert created.status_code == 201, created.text
    upload(created.json())
    batch_id = created.json()["batch_id"]
    status = stack.wait_terminal(batch_id)

    # Then one event says it completed, with the status body GET answers
    def announced() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]

    [event] = wait_for(announced, 30, "the batch's end on the bus")
    assert (event["source"], event["detail-type"]) == ("filebatch", "Batch Completed")
    detail = event["detail"]
    assert (detail.pop("tenant_id"), detail.pop("event_id")) == (TENANT, f"{batch_id}:0:completed")
    assert detail == status == stack.status(batch_id).json()
    assert detail["webhook_url"] is None


def test_a_webhook_that_fails_twice_gets_the_same_signed_delivery_three_times(
    hooks_stack: Stack, receiver: Receiver
) -> None:
    stack = hooks_stack
    # Given no secret yet: a batch with a webhook is refused
    refused = create(stack, receiver.url)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "webhook_secret_missing")
    # Given the tenant's secret, and a receiver that answers 503 twice before it takes a delivery
    rotated = requests.post(f"{stack.api_url}/v1/webhooks/secret", headers=stack.headers(), timeout=30)
    assert rotated.status_code == 201, rotated.text
    secret = rotated.json()["secret"]
    receiver.failures_left = 2
    # An address inside the network is refused even with a secret (and https); loopback is this stack's
    inside = create(stack, "https://10.20.30.40/hook")
    assert (inside.status_code, inside.json()["error"]["code"]) == (400, "webhook_url_refused")

    # When a batch with the receiver as its webhook ends
    created = create(stack, receiver.url)
    assert created.status_code == 201, created.text
    assert created.json()["webhook_url"] == receiver.url
    upload(created.json())
    batch_id = created.json()["batch_id"]
    final = stack.wait_terminal(batch_id)
    assert final["status"] == "completed" and final["webhook_url"] == receiver.url

    # Then the receiver is called three times: two refused attempts, then the delivery
    sqs = stack.local.client("sqs")
    wait_for(lambda: len(receiver.received) >= 3, 60, "three webhook attempts")
    # and no fourth: the delivered message is gone from the queue (none waiting, none in flight)
    wait_for(
        lambda: _queue_counts(sqs, stack.local.outputs["WebhookDeliveriesQueueUrl"]) == ("0", "0"),
        30,
        "the delivered message to leave the queue",
    )
    assert len(receiver.received) == 3
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert ids == {f"{batch_id}:0:completed"}
    for headers, body in receiver.received:
        assert verify(secret, headers, body), headers
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == stack.status(batch_id).json()
    # Each failed attempt postponed the next by its backoff (1 s, then 2 s: WebhookRetryBaseSeconds 1)
    log = (stack.local.state_dir / "logs" / "DeliverWebhookFunction.log").read_text()
    assert "attempt 1 of" in log and "next attempt in 1 s" in log
    assert "attempt 2 of" in log and "next attempt in 2 s" in log
    # Nothing was dead-lettered
    dead = sqs.get_queue_attributes(
        QueueUrl=stack.local.outputs["WebhookDeliveriesDeadLetterQueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages"],
    )
    assert dead["Attributes"]["ApproximateNumberOfMessages"] == "0"


def _queue_counts(sqs: Any, queue_url: str) -> tuple[str, str]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]


@contextmanager
def bus_outage(stack: Stack) -> Iterator[None]:
    """EventBridge unavailable: the stack's bus is gone (every PutEvents of the handlers fails), then
    back with its rules and their targets as they were."""
    events, bus = stack.local.client("events"), stack.local.outputs["BatchEventsBusName"]
    rules = [
        (rule, events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"])
        for rule in events.list_rules(EventBusName=bus)["Rules"]
    ]
    events.delete_event_bus(Name=bus)
    try:
        yield
    finally:
        events.create_event_bus(Name=bus)
        for rule, targets in rules:
            events.put_rule(
                Name=rule["Name"], EventBusName=bus, EventPattern=rule["EventPattern"], State=rule["State"]
            )
            if targets:
                events.put_targets(Rule=rule["Name"], EventBusName=bus, Targets=targets)


def test_an_end_the_bus_could_not_take_is_announced_by_the_sweep_and_its_webhook_delivered(
    hooks_stack: Stack, receiver: Receiver
) -> None:
    stack = hooks_stack
    # Given a batch with a webhook, cancelled while EventBridge is unavailable
    rotated = requests.post(f"{stack.api_url}/v1/webhooks/secret", headers=stack.headers(), timeout=30)
    assert rotated.status_code == 201, rotated.text
    created = create(stack, receiver.url)
    assert created.status_code == 201, created.text
    batch_id = created.json()["batch_id"]
    with bus_outage(stack):
        cancelled = requests.post(
            f"{stack.api_url}/v1/batches/{batch_id}/cancel", headers=stack.headers(), timeout=30
        )
        # The cancel is written, its announcement failed: the client is told to try again
        assert (cancelled.status_code, cancelled.json()["error"]["code"]) == (503, "storage_unavailable")
    assert stack.status(batch_id).json()["status"] == "cancelled"
    assert receiver.received == []
    # When nobody does anything more (no repeated cancel): past the watchdog time and the sweep's
    # next minute
    wait_for(lambda: receiver.received, 240, "the sweep to announce the end, and its webhook")
    # Then the end was announced, and its webhook delivered, signed, under the end's id
    headers, body = receiver.received[0]
    assert headers["webhook-id"] == f"{batch_id}:0:cancelled"
    assert verify(rotated.json()["secret"], headers, body)
    assert json.loads(body) == stack.status(batch_id).json()
