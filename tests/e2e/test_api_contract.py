"""The API's edges over HTTP: bad input is a 4xx JSON error (never a 5xx), auth, tenant scoping."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e

GOOD_FILE = {"filename": "a.png", "size": 10, "content_type": "image/png"}


def assert_json_error(response: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code
    return dict(error)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        # Refused by the gateway's request model before the function runs, with the same code
        ("{not json", "validation_error"),
        ("[]", "validation_error"),
        ('{"files": []}', "validation_error"),
        ('{"files": [{"filename": "a.png"}]}', "validation_error"),
        (
            '{"files": [{"filename": "a.png", "size": "big", "content_type": "image/png"}]}',
            "validation_error",
        ),
        (
            '{"files": [{"filename": "a.png", "size": 10, "content_type": "image/png", "x": 1}]}',
            "validation_error",
        ),
        (
            '{"files": [{"filename": "a.png", "size": 99999999999, "content_type": "image/png"}]}',
            "file_too_large",
        ),
    ],
)
def test_malformed_create_requests_are_400_json_errors(stack: Stack, body: str, code: str) -> None:
    response = requests.post(
        f"{stack.api_url}/v1/batches",
        data=body,
        headers={**stack.headers(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert_json_error(response, 400, code)


def test_too_many_files_is_a_400(stack: Stack) -> None:
    assert_json_error(stack.post_batch([GOOD_FILE] * 10_001), 400, "validation_error")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/batches/not-a-batch", 404, "batch_not_found"),
        ("/v1/batches/b-00000000000000000000000000000000", 404, "batch_not_found"),
        ("/v1/batches/b-00000000000000000000000000000000/results?limit=0", 400, "validation_error"),
        ("/v1/batches/b-00000000000000000000000000000000/results?limit=lots", 400, "validation_error"),
        ("/v1/nothing-here", 404, "route_not_found"),
    ],
)
def test_bad_reads_are_4xx_json_errors(stack: Stack, path: str, status: int, code: str) -> None:
    assert_json_error(
        requests.get(f"{stack.api_url}{path}", headers=stack.headers(), timeout=30), status, code
    )


def test_a_bad_cursor_is_a_400(stack: Stack) -> None:
    batch_id = stack.post_batch([GOOD_FILE]).json()["batch_id"]
    response = requests.get(
        f"{stack.api_url}/v1/batches/{batch_id}/results",
        params={"cursor": "forged"},
        headers=stack.headers(),
        timeout=30,
    )
    assert_json_error(response, 400, "invalid_cursor")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer fbk_this-key-was-never-issued-to-anyone"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
def test_missing_or_wrong_keys_are_refused(stack: Stack, headers: dict[str, str]) -> None:
    response = requests.post(
        f"{stack.api_url}/v1/batches", json={"files": [GOOD_FILE]}, headers=headers, timeout=30
    )
    error = assert_json_error(response, 401)
    assert error["code"] == "unauthorized"


def test_another_tenants_batch_is_404_for_status_and_results(stack: Stack) -> None:
    # Given a batch of tenant e2e, and a key of another tenant
    batch_id = stack.post_batch([GOOD_FILE]).json()["batch_id"]
    other_key = stack.local.create_api_key("other-tenant")
    # When the other tenant asks for it
    status = stack.status(batch_id, key=other_key)
    results = requests.get(
        f"{stack.api_url}/v1/batches/{batch_id}/results", headers=stack.headers(other_key), timeout=30
    )
    # Then it does not exist for them, and the owner still sees it
    assert_json_error(status, 404, "batch_not_found")
    assert_json_error(results, 404, "batch_not_found")
    assert stack.status(batch_id).status_code == 200


def test_a_batch_larger_than_one_page_gets_the_rest_of_its_upload_urls_from_the_uploads_route(
    stack: Stack,
) -> None:
    # Given a batch of 1,001 files (one more than a create answer carries)
    files = [{"filename": f"{i}.png", "size": 10, "content_type": "image/png"} for i in range(1001)]
    response = stack.post_batch(files)
    assert response.status_code == 201, response.text
    created = response.json()
    batch_id = created["batch_id"]
    # When the first file is uploaded and the rest of the instructions are fetched from the cursor
    first = created["files"][0]["upload"]
    requests.put(first["url"], data=b"0123456789", headers=first["headers"], timeout=30)
    rest = requests.get(
        f"{stack.api_url}/v1/batches/{batch_id}/uploads",
        params={"cursor": created["next_uploads_cursor"]},
        headers=stack.headers(),
        timeout=30,
    ).json()
    # Then the create answer had 1,000 instructions and the cursor led to the 1,001st
    assert created["total_files"] == 1001
    assert len(created["files"]) == 1000
    assert [f["file_id"] for f in rest["items"]] == ["f01001"]
    assert rest["next_cursor"] is None

    # And once the first upload is recorded, refreshing from the start no longer offers it
    def first_page_ids() -> list[str]:
        page = requests.get(
            f"{stack.api_url}/v1/batches/{batch_id}/uploads",
            params={"limit": 3},
            headers=stack.headers(),
            timeout=30,
        ).json()
        return [f["file_id"] for f in page["items"]]

    wait_for(lambda: first_page_ids() == ["f00002", "f00003"], 30, "the first upload to be recorded")


# --- inputs that once reached an unhandled exception (502), and silent coercions -----------------
def post_raw(stack: Stack, body: str | bytes, content_type: str) -> requests.Response:
    return requests.post(
        f"{stack.api_url}/v1/batches",
        data=body,
        headers={**stack.headers(), "Content-Type": content_type},
        timeout=30,
    )


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        pytest.param(
            '{"files": [{"filename": "a.png", "size": ' + "9" * 5000 + ', "content_type": "image/png"}]}',
            "application/json",
            400,
            "validation_error",
            id="5000-digit-integer",
        ),
        pytest.param(
            "[" * 50_000 + "]" * 50_000, "application/json", 400, "validation_error", id="nested-50000"
        ),
        pytest.param(
            '{"files": [{"filename": "a.png", "size": 10, "content_type": "image/png"}]}',
            "multipart/form-data",
            415,
            "unsupported_media_type",
            id="multipart-without-boundary",
        ),
        pytest.param('{"files": []}', "text/plain", 415, "unsupported_media_type", id="text-plain"),
        pytest.param('{"files": []}', "application/xml", 415, "unsupported_media_type", id="xml"),
        pytest.param(
            "files=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type", id="form-encoded"
        ),
        pytest.param(
            '{"files": [{"filename": "a.png", "size": "6", "content_type": "image/png"}]}',
            "application/json",
            400,
            "validation_error",
            id="size-as-string",
        ),
        pytest.param(
            '{"files": [{"filename": "a.png", "size": true, "content_type": "image/png"}]}',
            "application/json",
            400,
            "validation_error",
            id="size-as-boolean",
        ),
        pytest.param(
            '{"files": [{"filename": "a.png", "size": 6.5, "content_type": "image/png"}]}',
            "application/json",
            400,
            "validation_error",
            id="size-as-fraction",
        ),
        pytest.param(
            '{"files": [{"filename": "a.png", "size": 10, "content_type": "image/png"}]}'
            + " " * (7 * 1024 * 1024),
            "application/json",
            413,
            "payload_too_large",
            id="7-MiB-valid-body",
        ),
    ],
)
def test_hostile_bodies_get_4xx_json_errors_and_create_nothing(
    stack: Stack, body: str, content_type: str, status: int, code: str
) -> None:
    # Given a body and content type a client can send
    # When it is posted to create a batch
    response = post_raw(stack, body, content_type)
    # Then the answer is the API's JSON error with a 4xx status, never a 5xx
    assert_json_error(response, status, code)


@pytest.mark.parametrize(
    "content_type", ["APPLICATION/JSON", "application/json; charset=utf-8", "Application/Json;charset=UTF-8"]
)
def test_json_content_types_are_accepted_in_any_case_and_with_parameters(
    stack: Stack, content_type: str
) -> None:
    response = post_raw(
        stack, '{"files": [{"filename": "a.png", "size": 10, "content_type": "image/png"}]}', content_type
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("route", ["results", "uploads"])
def test_a_cursor_that_decodes_to_deeply_nested_json_is_a_400(stack: Stack, route: str) -> None:
    # Given a batch, and a cursor crafted to decode to 10,000 nested arrays
    batch_id = stack.post_batch([GOOD_FILE]).json()["batch_id"]
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 1000).decode().rstrip("=")
    # When it is used on a paged route
    response = requests.get(
        f"{stack.api_url}/v1/batches/{batch_id}/{route}",
        params={"cursor": cursor},
        headers=stack.headers(),
        timeout=30,
    )
    # Then it is refused as an invalid cursor
    assert_json_error(response, 400, "invalid_cursor")


def test_the_bearer_scheme_is_case_insensitive(stack: Stack) -> None:
    for scheme in ("bearer", "BEARER"):
        response = requests.get(
            f"{stack.api_url}/v1/batches/b-{'0' * 32}",
            headers={"Authorization": f"{scheme} {stack.api_key}"},
            timeout=30,
        )
        # The key is accepted (the batch does not exist: 404, not 401)
        assert_json_error(response, 404)


def test_unknown_methods_get_a_json_gateway_error(stack: Stack) -> None:
    response = requests.request("FOO", f"{stack.api_url}/v1/batches", headers=stack.headers(), timeout=30)
    assert response.status_code < 500
    assert_json_error(response, response.status_code)


def test_the_local_stack_serves_the_published_contract(stack: Stack) -> None:
    # Given the committed contract
    committed = json.loads((PROJECT_ROOT / "docs" / "openapi.json").read_text())
    # When a client asks the local API for it, with no key
    response = requests.get(f"{stack.api_url}/openapi.json", timeout=30)
    # Then it is that document
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == committed


def test_the_local_stack_serves_a_readable_reference_with_its_renderer_and_no_cdn(stack: Stack) -> None:
    # When a person opens /docs
    page = requests.get(f"{stack.api_url}/docs", timeout=30)
    # Then it is an HTML page that renders /openapi.json with a script the stack itself serves
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert 'spec-url="/openapi.json"' in page.text
    scripts = [
        line.split('src="')[1].split('"')[0] for line in page.text.splitlines() if "<script src=" in line
    ]
    assert scripts == ["/docs/redoc.standalone.js"]
    renderer = requests.get(f"{stack.api_url}{scripts[0]}", timeout=30)
    assert renderer.status_code == 200
    assert renderer.headers["Content-Type"].startswith("text/javascript")
    assert len(renderer.content) > 500_000
    assert "http" not in page.text.split("<body>")[1]


def test_the_gateway_refuses_a_body_that_breaks_the_model_before_the_function_runs(stack: Stack) -> None:
    # Given the create function's log, as Lambda writes a START line per invocation
    log = stack.local.state_dir / "logs" / "CreateBatchFunction.log"
    invocations = log.read_text().count("START RequestId") if log.exists() else 0
    # When a body with a file missing its size is posted
    response = post_raw(
        stack, '{"files": [{"filename": "a.png", "content_type": "image/png"}]}', "application/json"
    )
    # Then the gateway answers 400 in the API's error shape, naming the problem, and the function never ran
    error = assert_json_error(response, 400, "validation_error")
    assert "size" in error["message"]
    assert (log.read_text().count("START RequestId") if log.exists() else 0) == invocations


@pytest.mark.parametrize(("size", "status"), [("6366.0", 201), ("6366.5", 400)])
def test_the_gateway_reads_integer_as_the_contract_does(stack: Stack, size: str, status: int) -> None:
    # Given a size written as a number with a fraction part (an integer in the OpenAPI 3.1 contract
    # when the fraction is zero, a number in draft 4, which API Gateway's models use)
    body = '{"files": [{"filename": "a.png", "size": ' + size + ', "content_type": "image/png"}]}'
    # When it is posted
    response = post_raw(stack, body, "application/json")
    # Then an integral value creates the batch, a fractional one is a validation error
    assert response.status_code == status, response.text
    if status == 400:
        assert_json_error(response, 400, "validation_error")


def test_a_batch_keeps_its_description_instructions_and_says_what_the_local_provider_ignores(
    stack: Stack,
) -> None:
    # Given a batch created with instructions for the model
    description = {"prompt": "Name the product and its condition.", "language": "de", "detail": "brief"}
    files = [{"filename": "a.png", "size": 10, "content_type": "image/png"}]
    created = requests.post(
        f"{stack.api_url}/v1/batches",
        json={"files": files, "description": description},
        headers=stack.headers(),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    # When its status is read
    status = requests.get(
        f"{stack.api_url}/v1/batches/{created.json()['batch_id']}", headers=stack.headers(), timeout=30
    ).json()
    # Then the instructions are stored as given, and the local provider says it follows none of them
    settings = status["description"]
    assert {k: settings[k] for k in description} == description
    assert settings["provider"] == "local"
    assert settings["ignored"] == ["detail", "language", "prompt"]
    assert "English" in settings["note"]


def test_bad_description_instructions_are_a_400(stack: Stack) -> None:
    body = (
        '{"files": [{"filename": "a.png", "size": 1, "content_type": "image/png"}],'
        ' "description": {"language": "english"}}'
    )
    assert_json_error(post_raw(stack, body, "application/json"), 400, "validation_error")
