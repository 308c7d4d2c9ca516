"""The workflow's handlers with DescriptionProvider=bedrock: S3 and DynamoDB under moto, Bedrock's
answers from botocore's Stubber on the client the runtime builds (replies and errors as Converse
shapes them, tests/fixtures/bedrock)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.conftest import FIXTURES, PROJECT_ROOT
from tests.integration.conftest import Aws, api_event
from tests.integration.test_workflow_handlers import batch_status, create, s3_event, upload_all

Invoke = Callable[[str, dict[str, Any]], Any]
MODEL_ID = "us.amazon.nova-lite-v1:0"


def reply(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "bedrock" / f"{name}.json").read_text())


@pytest.fixture
def bedrock(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The describe step configured for Bedrock as the template configures it; its client stubbed."""
    from filebatch import runtime
    from filebatch.config import get_settings

    monkeypatch.setenv("DESCRIPTION_PROVIDER", "bedrock")
    monkeypatch.setenv("BEDROCK_MODEL_ID", MODEL_ID)
    monkeypatch.setenv("BEDROCK_REGION", "us-east-1")
    get_settings.cache_clear()
    runtime.description_provider.cache_clear()
    stubber = Stubber(runtime.bedrock_client())
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def uploaded_batch(invoke: Invoke, *names: str) -> tuple[str, list[dict[str, Any]]]:
    """A batch of sample files, uploaded, and each file's process step output."""
    contents = [(PROJECT_ROOT / "samples" / name).read_bytes() for name in names]
    kinds = {"jpg": "image/jpeg", "pdf": "application/pdf", "png": "image/png"}
    created = create(
        invoke, [(n, c, kinds[n.rsplit(".", 1)[1]]) for n, c in zip(names, contents, strict=True)]
    )
    batch_id = created["batch_id"]
    upload_all(created, contents)
    processed = []
    for position, content in enumerate(contents, start=1):
        file_id = f"f{position:05d}"
        invoke("record_upload", s3_event(batch_id, file_id, len(content)))
        processed.append(
            invoke("process_file", {"tenant_id": "acme", "batch_id": batch_id, "file_id": file_id})
        )
    return batch_id, processed


def results(invoke: Invoke, batch_id: str) -> list[dict[str, Any]]:
    event = api_event("GET", f"/v1/batches/{batch_id}/results", path_parameters={"batch_id": batch_id})
    return json.loads(invoke("list_results", event)["body"])["items"]


def caught(processed: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """What the describe step's Catch hands the record step for a Lambda error."""
    name = type(error).__name__
    return {
        **processed,
        "error": {"Error": name, "Cause": json.dumps({"errorType": name, "errorMessage": str(error)})},
    }


def test_described_files_record_the_model_call_and_the_batch_counts_their_tokens_once(
    aws: Aws, invoke: Invoke, bedrock: Stubber
) -> None:
    # Given a photo and a PDF, uploaded and verified
    batch_id, processed = uploaded_batch(invoke, "grace-hopper.jpg", "filebatch-overview.pdf")
    bedrock.add_response("converse", reply("converse_tool_use_image"))
    bedrock.add_response("converse", reply("converse_tool_use_document"))
    # When each is described and recorded, the first record step replayed (a Step Functions retry)
    described = [invoke("describe_file", {"file": file, "attempt": 0}) for file in processed]
    for file in [described[0], *described]:
        invoke("record_result", {"outcome": "succeeded", "file": file})
    # Then each result names the provider, the model, its tokens, latency and stop reason
    items = results(invoke, batch_id)
    assert [item["description"]["provider"] for item in items] == ["bedrock", "bedrock"]
    assert items[0]["description"]["invocation"] == {
        "model_id": MODEL_ID,
        "usage": {"input_tokens": 1812, "output_tokens": 131},
        "latency_ms": 1874,
        "stop_reason": "tool_use",
    }
    assert items[0]["description"]["attributes"]["measured"]["format"] == "JPEG"
    assert items[1]["description"]["attributes"]["measured"]["page_count"] == 2
    # And the batch shows the token totals, each file counted once despite the replay
    status = batch_status(invoke, batch_id)
    assert status["counts"]["completed"] == 2
    assert status["usage"] == {"input_tokens": 1812 + 1203, "output_tokens": 131 + 97}


def test_throttling_raises_the_error_name_the_state_machine_retries(
    aws: Aws, invoke: Invoke, bedrock: Stubber
) -> None:
    # Given Bedrock throttles the call
    _, [processed] = uploaded_batch(invoke, "grace-hopper.jpg")
    bedrock.add_client_error(
        "converse",
        service_error_code="ThrottlingException",
        service_message="Too many requests, please wait before trying again.",
        http_status_code=429,
    )
    # When the describe handler runs, then it fails with the class the ASL's Retry matches
    with pytest.raises(Exception) as throttled:
        invoke("describe_file", {"file": processed, "attempt": 0})
    assert type(throttled.value).__name__ == "RetryableDescriptionError"
    assert str(throttled.value).startswith("provider_throttled: ")


def test_bad_output_that_outlasts_its_retries_is_recorded_permanent_with_its_code(
    aws: Aws, invoke: Invoke, bedrock: Stubber
) -> None:
    # Given a model that keeps answering in prose instead of calling the tool
    batch_id, [processed] = uploaded_batch(invoke, "grace-hopper.jpg")
    for _ in range(3):
        bedrock.add_response("converse", reply("converse_text_without_tool_call"))
    # When the describe step runs three times (its first attempt and the retrier's two), and the
    # Catch hands the last error on
    errors = []
    for attempt in range(3):
        with pytest.raises(Exception) as failed:
            invoke("describe_file", {"file": processed, "attempt": attempt})
        errors.append(failed.value)
    invoke("record_result", {"outcome": "failed", "file": caught(processed, errors[-1])})
    # Then each left as the error the ASL's own bad-output retrier matches, and the file failed for
    # good with its code, not retryable, and no tokens counted
    assert [type(e).__name__ for e in errors] == ["ProviderBadOutputError"] * 3
    [item] = results(invoke, batch_id)
    assert (item["status"], item["error"]["code"], item["error"]["retryable"]) == (
        "failed",
        "provider_bad_output",
        False,
    )
    assert batch_status(invoke, batch_id)["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_a_misconfigured_deployment_fails_files_permanently_saying_so(
    aws: Aws, invoke: Invoke, bedrock: Stubber
) -> None:
    # Given the function may not invoke the model (model access not granted, or a policy too narrow)
    batch_id, [processed] = uploaded_batch(invoke, "grace-hopper.jpg")
    bedrock.add_client_error(
        "converse",
        service_error_code="AccessDeniedException",
        service_message="You don't have access to the model with the specified model ID.",
        http_status_code=403,
    )
    with pytest.raises(Exception) as denied:
        invoke("describe_file", {"file": processed, "attempt": 0})
    invoke("record_result", {"outcome": "failed", "file": caught(processed, denied.value)})
    # Then the file failed, not retryable, with a code that points at the deployment
    [item] = results(invoke, batch_id)
    assert (item["error"]["code"], item["error"]["retryable"]) == ("provider_misconfigured", False)
