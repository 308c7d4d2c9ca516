"""Over HTTP against the local stack: idempotent creates (concurrent repeats included), batch names
and metadata, and GET /v1/batches (issue 8, stream CREATE)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

FILES = [
    {"filename": "a.png", "size": 10, "content_type": "image/png"},
    {"filename": "b.txt", "size": 3, "content_type": "text/plain"},
]


def tenant_key(stack: Stack, prefix: str) -> str:
    """A key for a tenant of this test alone (its list starts empty)."""
    return stack.local.create_api_key(f"{prefix}-{uuid.uuid4().hex[:8]}", plan="enterprise")


def post(
    stack: Stack, key: str, body: dict[str, Any], idempotency_key: str | None = None
) -> requests.Response:
    headers = stack.headers(key)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return requests.post(f"{stack.api_url}/v1/batches", json=body, headers=headers, timeout=60)


def list_batches(stack: Stack, key: str, **params: Any) -> requests.Response:
    return requests.get(f"{stack.api_url}/v1/batches", params=params, headers=stack.headers(key), timeout=30)


def test_an_idempotent_create_replayed_concurrently_from_5_threads_makes_exactly_one_batch(
    stack: Stack,
) -> None:
    # Given one tenant, one request and its Idempotency-Key, sent by 5 threads at the same moment
    key = tenant_key(stack, "idem")
    body = {"files": FILES, "name": "concurrent", "metadata": {"attempt": "any"}}
    idempotency_key = str(uuid.uuid4())
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def at_once(request: Any) -> None:
        start = threading.Barrier(5)

        def send() -> None:
            start.wait()
            response = request()
            with lock:
                answers.append(response)

        threads = [threading.Thread(target=send) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    # The local stack starts a create environment only when none is free, and a create takes a few
    # ms: held 1 s before its handler runs, each call needs an environment of its own, so the five
    # creates first warm five, and the five repeats then reach their handlers together.
    warm = f"warm-{idempotency_key}.png"
    stack.local.inject_latency("CreateBatchFunction", warm, 1.0)
    stack.local.inject_latency("CreateBatchFunction", idempotency_key, 1.0)
    warm_key = tenant_key(stack, "idem-warm")
    at_once(lambda: post(stack, warm_key, {"files": [{**FILES[0], "filename": warm}]}))
    assert [a.status_code for a in answers] == [201] * 5
    answers.clear()
    at_once(lambda: post(stack, key, body, idempotency_key))
    assert len(answers) == 5
    # Then every answer is the same 201 body, or 409 request_in_progress while the first ran
    created = [a for a in answers if a.status_code == 201]
    in_progress = [a for a in answers if a.status_code == 409]
    assert created and len(created) + len(in_progress) == 5, [(a.status_code, a.text[:200]) for a in answers]
    assert len({a.text for a in created}) == 1
    assert all(a.json()["error"]["code"] == "request_in_progress" for a in in_progress)
    assert all(a.headers.get("Retry-After") == "1" for a in in_progress)
    # And a repeat now answers that body too, and the tenant has exactly one batch
    again = post(stack, key, body, idempotency_key)
    assert again.status_code == 201 and again.text == created[0].text
    listed = list_batches(stack, key).json()
    assert [b["batch_id"] for b in listed["items"]] == [created[0].json()["batch_id"]]
    # And the same key with another body is refused
    reused = post(stack, key, {**body, "metadata": {"attempt": "other"}}, idempotency_key)
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_keys_are_checked_and_scoped_by_tenant(stack: Stack) -> None:
    ours, theirs = tenant_key(stack, "scope-a"), tenant_key(stack, "scope-b")
    bad = post(stack, ours, {"files": FILES}, "x" * 256)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_idempotency_key"
    # The same key and body from two tenants make two batches
    first = post(stack, ours, {"files": FILES}, "shared-key")
    second = post(stack, theirs, {"files": FILES}, "shared-key")
    assert first.status_code == second.status_code == 201
    assert first.json()["batch_id"] != second.json()["batch_id"]


def test_names_metadata_and_the_list_of_batches_over_http(stack: Stack) -> None:
    # Given a tenant with three batches, two named
    key, other = tenant_key(stack, "names"), tenant_key(stack, "names-other")
    nightly = post(stack, key, {"files": FILES, "name": "nightly-1", "metadata": {"team": "scans"}})
    plain = post(stack, key, {"files": FILES})
    weekly = post(stack, key, {"files": FILES, "name": "weekly"})
    assert nightly.status_code == plain.status_code == weekly.status_code == 201, nightly.text
    assert nightly.json()["name"] == "nightly-1" and nightly.json()["metadata"] == {"team": "scans"}
    ids = [r.json()["batch_id"] for r in (nightly, plain, weekly)]
    # Then a second "weekly" is refused for this tenant, not for another
    taken = post(stack, key, {"files": FILES, "name": "weekly"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "name_taken"
    assert post(stack, other, {"files": FILES, "name": "weekly"}).status_code == 201
    # And the status shows name and metadata
    status = stack.status(ids[0], key).json()
    assert (status["name"], status["metadata"]) == ("nightly-1", {"team": "scans"})
    # And the list is the tenant's batches newest first, in pages, and filtered
    first = list_batches(stack, key, limit=2)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [b["batch_id"] for b in page["items"]] == [ids[2], ids[1]] and page["next_cursor"]
    rest = list_batches(stack, key, limit=2, cursor=page["next_cursor"]).json()
    assert [b["batch_id"] for b in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    assert rest["items"][0] == status
    named = list_batches(stack, key, name="nightly").json()
    assert [b["batch_id"] for b in named["items"]] == [ids[0]]
    waiting = list_batches(stack, key, status="awaiting_upload").json()
    assert len(waiting["items"]) == 3
    assert list_batches(stack, key, status="completed").json()["items"] == []
    # And the other tenant sees only its own batch, and cannot use this tenant's cursor
    assert [b["name"] for b in list_batches(stack, other).json()["items"]] == ["weekly"]
    stolen = list_batches(stack, other, cursor=page["next_cursor"])
    assert stolen.status_code == 400 and stolen.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize(
    "fields",
    [{"name": ""}, {"name": "x" * 129}, {"metadata": {"k" * 65: "v"}}, {"metadata": {"k": 7}}],
)
def test_bad_names_and_metadata_are_refused_by_the_gateway_model(
    stack: Stack, fields: dict[str, Any]
) -> None:
    response = post(stack, stack.api_key, {"files": FILES, **fields})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"status": "sleeping"}, {"cursor": "forged.x"}]
)
def test_bad_list_requests_are_400(stack: Stack, params: dict[str, Any]) -> None:
    response = list_batches(stack, stack.api_key, **params)
    assert response.status_code == 400, response.text
