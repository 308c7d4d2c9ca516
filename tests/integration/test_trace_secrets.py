"""Presigned URLs are bearer credentials for an upload: they must not leave the function through
its X-Ray trace or its logs.

The handlers run in-process under moto with the real X-Ray SDK switched on and a segment open, as
Lambda's Active tracing does; only the emitter (the UDP sender to the X-Ray daemon) is replaced by
one that keeps the serialized trace documents. What is asserted is exactly what would reach X-Ray."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.services.processing import finalize_batch
from tests.integration.conftest import Aws, api_event, load_handler
from tests.integration.test_api_handlers import FILES, body_of

Invoke = Callable[[str, dict[str, Any]], Any]
SECRET_MARK = "X-Amz-Signature"
TRACED_HANDLERS = (
    "create_batch",
    "list_uploads",
    "get_batch",
    "export_results",
    "list_upload_parts",
    "sign_upload_parts",
)


class RecordingEmitter:
    """Stands in for the SDK's UDPEmitter: keeps each document it would have sent to the daemon."""

    def __init__(self) -> None:
        self.documents: list[str] = []

    def send_entity(self, entity: Any) -> None:
        self.documents.append(entity.serialize())

    def set_daemon_address(self, address: str | None) -> None:
        """The recorder calls this when reconfigured; there is no daemon to aim at."""


@pytest.fixture
def xray(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingEmitter]:
    # tests/conftest.py disables tracing for every test (POWERTOOLS_TRACE_DISABLED), and every
    # Tracer built disabled turns the SDK off globally: import the handlers first, then turn the
    # SDK back on for this test's duration only.
    for function_dir in TRACED_HANDLERS:
        load_handler(function_dir)
    monkeypatch.delenv("AWS_XRAY_SDK_ENABLED", raising=False)
    was_enabled = global_sdk_config.sdk_enabled()
    emitter = RecordingEmitter()
    monkeypatch.setattr(xray_recorder, "emitter", emitter)
    global_sdk_config.set_sdk_enabled(True)
    try:
        yield emitter
    finally:
        xray_recorder.clear_trace_entities()
        global_sdk_config.set_sdk_enabled(was_enabled)


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything the handlers' Powertools Logger writes, at DEBUG (the dev stage's level)."""
    # Every handler's Logger shares one service logger and its one stream handler.
    logger = load_handler("create_batch").logger
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    monkeypatch.setattr(handler, "stream", stream)
    level = logger.log_level
    logger.setLevel("DEBUG")
    try:
        yield stream
    finally:
        logger.setLevel(level)


def traced(emitter: RecordingEmitter, invoke: Invoke, function_dir: str, event: dict[str, Any]) -> Any:
    """Invoke a handler inside a sampled segment, as Lambda does with Active tracing; the segment
    is sent (to the recording emitter) when it ends."""
    # Powertools' decorators open subsegments on the SDK's recorder whatever the Tracer was built
    # with; whether anything is recorded depends on the SDK being enabled and a segment existing.
    sent_before = len(emitter.documents)
    xray_recorder.begin_segment(f"test-{function_dir}", sampling=1)
    try:
        response = invoke(function_dir, event)
    finally:
        xray_recorder.end_segment()
    assert len(emitter.documents) > sent_before, f"{function_dir}: no trace document was emitted"
    return response


def subsegment_names(documents: list[str]) -> set[str]:
    def walk(entity: dict[str, Any]) -> Iterator[str]:
        for child in entity.get("subsegments", []):
            yield child["name"]
            yield from walk(child)

    return {name for document in documents for name in walk(json.loads(document))}


def test_presigned_urls_reach_neither_traces_nor_logs(
    aws: Aws, invoke: Invoke, xray: RecordingEmitter, log_stream: io.StringIO
) -> None:
    # Given a batch created with tracing on, and its uploads listed with tracing on
    created_response = traced(
        xray, invoke, "create_batch", api_event("POST", "/v1/batches", body={"files": FILES})
    )
    assert created_response["statusCode"] == 201
    batch_id = body_of(created_response)["batch_id"]
    uploads_response = traced(
        xray,
        invoke,
        "list_uploads",
        api_event("GET", f"/v1/batches/{batch_id}/uploads", path_parameters={"batch_id": batch_id}),
    )
    # (the responses themselves do carry presigned URLs: there is something to leak)
    assert SECRET_MARK in created_response["body"]
    assert SECRET_MARK in uploads_response["body"]
    url_documents = list(xray.documents)

    # And, as a control, a status read whose response carries no URL
    status_response = traced(
        xray,
        invoke,
        "get_batch",
        api_event("GET", f"/v1/batches/{batch_id}", path_parameters={"batch_id": batch_id}),
    )
    assert status_response["statusCode"] == 200
    status_documents = xray.documents[len(url_documents) :]

    # Then the control proves the seam records responses and annotations at all
    status_trace = "\n".join(status_documents)
    assert "lambda_handler response" in status_trace
    assert batch_id in status_trace
    assert "ColdStart" in status_trace
    # And the URL handlers were traced (their subsegments and annotations are there) ...
    url_trace = "\n".join(url_documents)
    names = subsegment_names(url_documents)
    assert "## lambda_handler" in names
    assert any(name.endswith(".post_batch") for name in names), names
    assert any(name.endswith(".get_uploads") for name in names), names
    assert "ColdStart" in url_trace
    # ... without a presigned URL in any trace document
    assert SECRET_MARK not in url_trace

    # And the logs carry the handlers' lines but no presigned URL
    logs = log_stream.getvalue()
    assert "batch created" in logs
    assert SECRET_MARK not in logs


def test_the_export_url_reaches_neither_traces_nor_logs(
    aws: Aws, invoke: Invoke, xray: RecordingEmitter, log_stream: io.StringIO
) -> None:
    # Given an ended batch (its export written), and its export asked for with tracing on
    created = traced(xray, invoke, "create_batch", api_event("POST", "/v1/batches", body={"files": FILES}))
    batch_id = body_of(created)["batch_id"]
    runtime.repository().start_run("acme", batch_id, files=len(FILES), at=datetime.now(UTC))
    finalize_batch(
        runtime.repository(),
        "acme",
        batch_id,
        storage=runtime.storage(),
        now=datetime.now(UTC),
        events=runtime.batch_events(),
        provider="local",
    )
    sent_before = len(xray.documents)
    response = traced(
        xray,
        invoke,
        "export_results",
        api_event("GET", f"/v1/batches/{batch_id}/export", path_parameters={"batch_id": batch_id}),
    )
    # (the response carries a presigned GET: there is something to leak)
    assert response["statusCode"] == 200 and SECRET_MARK in response["body"]
    # Then the handler was traced, without the URL in any trace document or log line
    documents = xray.documents[sent_before:]
    assert any(name.endswith(".get_batch_export") for name in subsegment_names(documents))
    assert SECRET_MARK not in "\n".join(documents)


def test_an_idempotent_create_and_its_replay_leak_no_presigned_url(
    aws: Aws, invoke: Invoke, xray: RecordingEmitter, log_stream: io.StringIO
) -> None:
    # Given an Idempotency-Key create, then its replay (the answer read back from the idempotency
    # store), both traced (issue 8)
    def keyed() -> dict[str, Any]:
        return api_event("POST", "/v1/batches", body={"files": FILES}, headers={"Idempotency-Key": "trace-1"})

    first = traced(xray, invoke, "create_batch", keyed())
    replay = traced(xray, invoke, "create_batch", keyed())
    assert first["statusCode"] == replay["statusCode"] == 201 and first["body"] == replay["body"]
    assert SECRET_MARK in replay["body"]
    # Then neither the traces nor the logs carry a presigned URL
    assert any(name.endswith(".post_batch") for name in subsegment_names(xray.documents))
    assert SECRET_MARK not in "\n".join(xray.documents)
    assert SECRET_MARK not in log_stream.getvalue()


def test_part_urls_of_a_multipart_upload_reach_neither_traces_nor_logs(
    aws: Aws, invoke: Invoke, xray: RecordingEmitter, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a file above the multipart threshold (issue 10), created and its parts asked for, traced
    monkeypatch.setenv("MULTIPART_THRESHOLD_BYTES", str(5 * 1024 * 1024))
    get_settings.cache_clear()
    files = [{"filename": "scan.tif", "size": 20 * 1024 * 1024, "content_type": "image/tiff"}]
    created = traced(xray, invoke, "create_batch", api_event("POST", "/v1/batches", body={"files": files}))
    batch_id = body_of(created)["batch_id"]
    path = f"/v1/batches/{batch_id}/files/f00001/parts"
    parts = traced(
        xray,
        invoke,
        "list_upload_parts",
        api_event("GET", path, path_parameters={"batch_id": batch_id, "file_id": "f00001"}),
    )
    # (both responses carry presigned part URLs)
    assert body_of(created)["files"][0]["upload"]["method"] == "MULTIPART"
    assert parts["statusCode"] == 200 and SECRET_MARK in parts["body"]
    # Then neither the traces nor the logs carry one
    assert any(name.endswith(".get_parts") for name in subsegment_names(xray.documents))
    assert SECRET_MARK not in "\n".join(xray.documents)
    assert SECRET_MARK not in log_stream.getvalue()


def test_part_urls_signed_with_checksums_reach_neither_traces_nor_logs(
    aws: Aws, invoke: Invoke, xray: RecordingEmitter, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a multipart file that declares its SHA-256 (part URLs come from POST .../parts), traced
    monkeypatch.setenv("MULTIPART_THRESHOLD_BYTES", str(5 * 1024 * 1024))
    get_settings.cache_clear()
    digest = "ab" * 32
    files = [
        {"filename": "scan.tif", "size": 20 * 1024 * 1024, "content_type": "image/tiff", "sha256": digest}
    ]
    created = traced(xray, invoke, "create_batch", api_event("POST", "/v1/batches", body={"files": files}))
    batch_id = body_of(created)["batch_id"]
    path = f"/v1/batches/{batch_id}/files/f00001/parts"
    signed = traced(
        xray,
        invoke,
        "sign_upload_parts",
        api_event(
            "POST",
            path,
            path_parameters={"batch_id": batch_id, "file_id": "f00001"},
            body={"parts": [{"part_number": 1, "sha256": digest}]},
        ),
    )
    assert signed["statusCode"] == 201 and SECRET_MARK in signed["body"]
    # Then neither the traces nor the logs carry one
    assert any(name.endswith(".post_parts") for name in subsegment_names(xray.documents))
    assert SECRET_MARK not in "\n".join(xray.documents)
    assert SECRET_MARK not in log_stream.getvalue()
