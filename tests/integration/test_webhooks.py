"""Events and webhooks in-process under moto: the secret route and its item, create with a webhook_url,
finalize putting the end on the bus, the template's rule routing it to the deliveries queue, and the
deliver handler POSTing to a receiver on 127.0.0.1 (real sockets), with partial failures and the
postponed retry. The transport's pinning and TLS checks against real servers."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from filebatch import runtime
from filebatch.adapters.webhooks import HttpWebhookTransport
from filebatch.models.domain import WebhookSecret
from filebatch.services.ports import WebhookTarget
from filebatch_local.events import to_lambda_record
from filebatch_local.template import Template
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import EVENT_BUS, WEBHOOK_QUEUE, Aws, api_event

Invoke = Callable[[str, dict[str, Any]], Any]
NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


# -- a receiver on 127.0.0.1 --------------------------------------------------------------------------
@dataclass
class Receiver:
    url: str
    # path → statuses to answer, in turn (then 200)
    plan: dict[str, list[int]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    delay_s: float = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            time.sleep(state.delay_s)
            statuses = state.plan.get(self.path) or [200]
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split(" "))


# -- helpers ---------------------------------------------------------------------------------------
def rotate(invoke: Invoke) -> dict[str, Any]:
    response = invoke("rotate_webhook_secret", api_event("POST", "/v1/webhooks/secret"))
    assert response["statusCode"] == 201, response["body"]
    return dict(json.loads(response["body"]))


def create(invoke: Invoke, webhook_url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"files": [{"filename": "a.png", "size": 3, "content_type": "image/png"}]}
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    response = invoke("create_batch", api_event("POST", "/v1/batches", body=body))
    return {**json.loads(response["body"]), "http_status": response["statusCode"]}


def route_the_bus_like_the_template() -> str:
    """The template's WebhookDeliveriesRule (its own pattern) on the test bus, to the deliveries queue."""
    rule = Template(PROJECT_ROOT / "template.yaml").properties("WebhookDeliveriesRule")
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=WEBHOOK_QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events")
    events.put_rule(Name="webhooks", EventBusName=EVENT_BUS, EventPattern=json.dumps(rule["EventPattern"]))
    events.put_targets(Rule="webhooks", EventBusName=EVENT_BUS, Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


def receive(queue_url: str, wait_s: float = 0.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    while True:
        messages = (
            boto3.client("sqs")
            .receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
            .get("Messages", [])
        )
        if messages or time.monotonic() >= deadline:
            return list(messages)
        time.sleep(0.1)


def sqs_event(queue_url: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    arn = boto3.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return {"Records": [to_lambda_record(m, arn["Attributes"]["QueueArn"], "us-east-1") for m in messages]}


# -- the secret ------------------------------------------------------------------------------------
def test_the_secret_route_creates_then_rotates_and_the_item_keeps_the_replaced_one(
    aws: Aws, invoke: Invoke
) -> None:
    first = rotate(invoke)
    assert first["secret"].startswith("whsec_") and first["previous_secret_valid_until"] is None
    second = rotate(invoke)
    assert second["secret"] != first["secret"]
    valid_until = datetime.fromisoformat(second["previous_secret_valid_until"])
    assert valid_until - datetime.fromisoformat(second["created_at"]) == timedelta(hours=24)
    item = aws.dynamodb.get_item(
        TableName="filebatch-test-table", Key={"pk": {"S": "TENANT#acme"}, "sk": {"S": "WEBHOOK_SECRET"}}
    )["Item"]
    assert item["secret"]["S"] == second["secret"] and item["previous_secret"]["S"] == first["secret"]
    # Another tenant has none
    assert runtime.repository().get_webhook_secret("globex") is None


def test_the_secret_is_replaced_only_if_it_is_still_the_one_that_was_read(aws: Aws) -> None:
    repo = runtime.repository()
    secret = WebhookSecret(tenant_id="acme", secret="whsec_" + "A" * 44, created_at=NOW)
    assert repo.put_webhook_secret(secret, replacing=None)
    # A second "first" secret, or a rotation based on a stale read, changes nothing
    assert not repo.put_webhook_secret(
        secret.model_copy(update={"secret": "whsec_" + "B" * 44}), replacing=None
    )
    newer = secret.model_copy(update={"secret": "whsec_" + "C" * 44, "created_at": NOW + timedelta(1)})
    assert not repo.put_webhook_secret(newer, replacing=NOW - timedelta(1))
    assert repo.put_webhook_secret(newer, replacing=NOW)
    assert repo.get_webhook_secret("acme") == newer


# -- create ----------------------------------------------------------------------------------------
def test_create_refuses_a_webhook_without_a_secret_or_to_an_inside_address(
    aws: Aws, invoke: Invoke, receiver: Receiver
) -> None:
    missing = create(invoke, f"{receiver.url}/hook")
    assert (missing["http_status"], missing["error"]["code"]) == (400, "webhook_secret_missing")
    rotate(invoke)
    for url in ("https://10.0.0.1/hook", "https://169.254.169.254/latest/meta-data/", "http://[fe80::1]/"):
        refused = create(invoke, url)
        assert (refused["http_status"], refused["error"]["code"]) == (400, "webhook_url_refused"), url
    malformed = create(invoke, "javascript:alert(1)")
    assert (malformed["http_status"], malformed["error"]["code"]) == (400, "validation_error")
    # This deployment allows loopback receivers (WEBHOOK_ALLOW_LOOPBACK, as the local stack does)
    created = create(invoke, f"{receiver.url}/hook")
    assert created["http_status"] == 201 and created["webhook_url"] == f"{receiver.url}/hook"


# -- finalize → bus → rule → queue → deliver ---------------------------------------------------------
def test_a_batch_end_reaches_its_webhook_signed_and_a_failed_attempt_comes_back_after_its_delay(
    aws: Aws, invoke: Invoke, receiver: Receiver
) -> None:
    # Given a tenant with a secret, the template's rule on the bus, and two batches with webhooks (one
    # whose receiver fails once) and one without
    secret = rotate(invoke)["secret"]
    queue_url = route_the_bus_like_the_template()
    receiver.plan = {"/flaky": [500, 200], "/ok": [204]}
    flaky, ok = create(invoke, f"{receiver.url}/flaky"), create(invoke, f"{receiver.url}/ok")
    silent = create(invoke, None)

    # When the workflow finalizes all three (their runs started, their files never ran: they end failed)
    for batch in (flaky, ok, silent):
        runtime.repository().start_run("acme", batch["batch_id"], files=1, at=datetime.now(UTC))
        assert (
            invoke("finalize_batch", {"tenant_id": "acme", "batch_id": batch["batch_id"]})["status"]
            == "failed"
        )

    # Then only the two with a webhook reach the deliveries queue, as EventBridge events
    messages = receive(queue_url, wait_s=5)
    assert len(messages) == 2
    events = {json.loads(m["Body"])["detail"]["batch_id"]: json.loads(m["Body"]) for m in messages}
    assert set(events) == {flaky["batch_id"], ok["batch_id"]}
    assert {e["detail-type"] for e in events.values()} == {"Batch Failed"} and {
        e["source"] for e in events.values()
    } == {"filebatch"}

    # When the deliver function gets both: one delivered, one reported failed (partial batch response)
    answer = invoke("deliver_webhook", sqs_event(queue_url, messages))
    flaky_message = next(m for m in messages if flaky["batch_id"] in m["Body"])
    assert answer == {"batchItemFailures": [{"itemIdentifier": flaky_message["MessageId"]}]}
    # The delivered one: the status body GET answers, signed, under the event id
    [(_, headers, body)] = [r for r in receiver.received if r[0] == "/ok"]
    status = invoke(
        "get_batch",
        api_event("GET", f"/v1/batches/{ok['batch_id']}", path_parameters={"batch_id": ok["batch_id"]}),
    )
    assert json.loads(body) == json.loads(status["body"])
    assert headers["webhook-id"] == f"{ok['batch_id']}:0:failed" and verify(secret, headers, body)

    # And the failed one is not visible until its delay (1 s base, attempt 1) has passed
    assert receive(queue_url) == []
    again = receive(queue_url, wait_s=5)
    assert [m["MessageId"] for m in again] == [flaky_message["MessageId"]]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert invoke("deliver_webhook", sqs_event(queue_url, again)) == {"batchItemFailures": []}
    attempts = [r for r in receiver.received if r[0] == "/flaky"]
    assert len(attempts) == 2
    assert {h["webhook-id"] for _, h, _ in attempts} == {f"{flaky['batch_id']}:0:failed"}
    assert all(verify(secret, h, b) for _, h, b in attempts)


# -- the transport ---------------------------------------------------------------------------------
def test_the_post_goes_to_the_checked_address_whatever_the_name_and_tries_a_second_one(
    receiver: Receiver,
) -> None:
    port = int(receiver.url.rsplit(":", 1)[1])
    # A name that resolves nowhere: the request still reaches the pinned address, Host is the name
    target = WebhookTarget("http", "receiver.invalid", port, "/in?x=1", ("127.0.0.2", "127.0.0.1"))
    response = HttpWebhookTransport().post(target, {"webhook-id": "w"}, b"{}")
    assert response.status == 200
    [(path, headers, body)] = receiver.received
    assert (path, headers["host"], body) == ("/in?x=1", f"receiver.invalid:{port}", b"{}")


def test_a_receiver_slower_than_the_read_timeout_is_no_answer(receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    port = int(receiver.url.rsplit(":", 1)[1])
    target = WebhookTarget("http", "receiver.invalid", port, "/", ("127.0.0.1",))
    with pytest.raises(OSError):
        HttpWebhookTransport(read_timeout=0.2).post(target, {}, b"{}")


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_https_is_verified_for_the_urls_host_while_connecting_to_the_pinned_address(
    tmp_path: Path,
) -> None:
    # Given an https receiver on 127.0.0.1 with a certificate for receiver.test
    cert, key = _certificate(tmp_path, "receiver.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        client_context = ssl.create_default_context(cafile=str(cert))
        transport = HttpWebhookTransport(context=client_context)
        # Then the name the certificate is for is accepted at the pinned address
        assert (
            transport.post(
                WebhookTarget("https", "receiver.test", port, "/", ("127.0.0.1",)), {}, b"{}"
            ).status
            == 202
        )
        # And another name at the same address is refused: the certificate is checked, not the address
        with pytest.raises(ssl.SSLCertVerificationError):
            transport.post(WebhookTarget("https", "other.test", port, "/", ("127.0.0.1",)), {}, b"{}")
    finally:
        server.shutdown()
        server.server_close()
    assert ipaddress.ip_address("127.0.0.1").is_loopback
