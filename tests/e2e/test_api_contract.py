"""The API's edges over HTTP: bad input is a 4xx JSON error (never a 5xx), auth, tenant scoping."""

from __future__ import annotations

from typing import Any

import pytest
import requests

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
        ("{not json", "malformed_json"),
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
