"""Batch names and metadata, Idempotency-Key on create, and GET /v1/batches: the handlers in-process
with the real adapters (Powertools' idempotency persistence included) on moto (issue 8, CREATE)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from filebatch import runtime
from filebatch.errors import ConflictError
from filebatch.models.domain import Batch, BatchStatus
from tests.integration.conftest import IDEMPOTENCY_TABLE, TABLE, Aws, api_event, load_handler

Invoke = Callable[[str, dict[str, Any]], Any]
FILES = [{"filename": "cat.png", "size": 5, "content_type": "image/png"}]


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def post(
    invoke: Invoke, body: dict[str, Any], *, tenant: str = "acme", key: str | None = None
) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key is not None else None
    return invoke(
        "create_batch", api_event("POST", "/v1/batches", tenant_id=tenant, body=body, headers=headers)
    )


def created(invoke: Invoke, tenant: str = "acme", **fields: Any) -> dict[str, Any]:
    response = post(invoke, {"files": FILES, **fields}, tenant=tenant)
    assert response["statusCode"] == 201, response["body"]
    return body_of(response)


def batch_items(aws: Aws) -> list[dict[str, Any]]:
    return [i for i in aws.dynamodb.scan(TableName=TABLE)["Items"] if i["sk"]["S"] == "BATCH"]


def listed(invoke: Invoke, tenant: str = "acme", **query: str) -> tuple[int, dict[str, Any]]:
    response = invoke("list_batches", api_event("GET", "/v1/batches", tenant_id=tenant, query=query or None))
    return response["statusCode"], body_of(response)


# ------------------------------------------------------------------------------ names and metadata
def test_name_and_metadata_are_stored_echoed_and_shown_by_the_status(aws: Aws, invoke: Invoke) -> None:
    # When acme creates a named batch with metadata
    batch = created(invoke, name="Nightly scans #1", metadata={"team": "scans", "run": ""})
    # Then the answer echoes both, and so does the batch's status
    assert (batch["name"], batch["metadata"]) == ("Nightly scans #1", {"team": "scans", "run": ""})
    path = f"/v1/batches/{batch['batch_id']}"
    status = body_of(
        invoke("get_batch", api_event("GET", path, path_parameters={"batch_id": batch["batch_id"]}))
    )
    assert (status["name"], status["metadata"]) == ("Nightly scans #1", {"team": "scans", "run": ""})
    # And the name's claim is stored with the batch's own expiry
    items = aws.dynamodb.scan(TableName=TABLE)["Items"]
    [claim] = [i for i in items if i["sk"]["S"] == "NAME"]
    [record] = [i for i in items if i["sk"]["S"] == "BATCH"]
    assert claim["pk"]["S"] == "TENANT#acme#NAME#Nightly scans #1"
    assert claim["batch_id"]["S"] == batch["batch_id"]
    assert claim["expires_at"] == record["expires_at"]
    # And an unnamed batch says so
    plain = created(invoke)
    assert (plain["name"], plain["metadata"]) == (None, {})


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": "x" * 129},
        {"name": "a\nb"},
        {"metadata": {"k": 1}},
        {"metadata": {"k" * 65: ""}},
    ],
)
def test_bad_names_and_metadata_are_400_validation_errors(
    aws: Aws, invoke: Invoke, fields: dict[str, Any]
) -> None:
    response = post(invoke, {"files": FILES, **fields})
    assert response["statusCode"] == 400
    assert body_of(response)["error"]["code"] == "validation_error"
    assert batch_items(aws) == []


def test_a_taken_name_is_409_for_its_tenant_only_and_free_once_released(aws: Aws, invoke: Invoke) -> None:
    first = created(invoke, name="nightly")
    # When acme uses the name again, it is refused and nothing is created
    again = post(invoke, {"files": FILES, "name": "nightly"})
    assert again["statusCode"] == 409 and body_of(again)["error"]["code"] == "name_taken"
    assert len(batch_items(aws)) == 1
    # But globex may use it
    created(invoke, tenant="globex", name="nightly")
    # And once the batch's deletion releases it (stream PURGE calls this), acme may use it again;
    # a release on behalf of another batch leaves the claim alone
    repo = runtime.repository()
    repo.release_name("acme", "nightly", batch_id="b-" + "0" * 32)
    assert post(invoke, {"files": FILES, "name": "nightly"})["statusCode"] == 409
    repo.release_name("acme", "nightly", batch_id=first["batch_id"])
    created(invoke, name="nightly")


def test_the_claim_is_written_with_the_batch_or_not_at_all(aws: Aws) -> None:
    # Given a live claim on a name (as another create's, which won a race past the check)
    repo = runtime.repository()
    now = datetime.now(UTC).replace(microsecond=0)

    def batch(number: int, created_at: datetime) -> Batch:
        return Batch(
            tenant_id="acme",
            batch_id=f"b-{number:032x}",
            status=BatchStatus.AWAITING_UPLOAD,
            total=1,
            created_at=created_at,
            updated_at=created_at,
            expires_at=created_at + timedelta(days=1),
            name="raced",
        )

    repo.create_batch(batch(1, now), [])
    # When the adapter writes another batch with that name, the transaction refuses both items
    with pytest.raises(ConflictError) as raised:
        repo.create_batch(batch(2, now), [])
    assert raised.value.code == "name_taken"
    assert repo.get_batch("acme", f"b-{2:032x}") is None
    # But once the first batch has expired, its claim is taken over (TTL may not have deleted it yet)
    later = now + timedelta(days=1, seconds=1)
    assert repo.name_holder("acme", "raced", now=now) == f"b-{1:032x}"
    assert repo.name_holder("acme", "raced", now=later) is None
    repo.create_batch(batch(3, later), [])
    assert repo.name_holder("acme", "raced", now=later) == f"b-{3:032x}"


# ------------------------------------------------------------------------------ Idempotency-Key
def test_the_same_key_and_body_answer_the_first_response_again_without_a_second_batch(
    aws: Aws, invoke: Invoke
) -> None:
    body = {"files": FILES, "name": "once", "metadata": {"a": "b"}}
    first = post(invoke, body, key="order-42")
    assert first["statusCode"] == 201
    # When the same request is sent again (header name in any case, the body's keys in any order)
    again = post(invoke, dict(reversed(body.items())), key="order-42")
    lower = invoke(
        "create_batch",
        api_event("POST", "/v1/batches", body=body, headers={"idempotency-key": "order-42"}),
    )
    # Then both get the first answer, to the byte (no name_taken: the first answer is replayed)
    assert again["statusCode"] == lower["statusCode"] == 201
    assert again["body"] == lower["body"] == first["body"]
    assert len(batch_items(aws)) == 1
    # And the record is scoped: kept 24 hours, its key a hash of the tenant and the key
    [record] = aws.dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    assert record["status"]["S"] == "COMPLETED"
    assert record["id"]["S"].startswith("create_batch#") and "order-42" not in record["id"]["S"]
    expiry = int(record["expiration"]["N"]) - datetime.now(UTC).timestamp()
    assert 24 * 3600 - 60 < expiry <= 24 * 3600


def test_the_same_key_with_another_body_is_409_and_another_tenant_never_meets_the_key(
    aws: Aws, invoke: Invoke
) -> None:
    first = body_of(post(invoke, {"files": FILES}, key="k1"))
    other_body = post(invoke, {"files": FILES, "metadata": {"x": "y"}}, key="k1")
    assert other_body["statusCode"] == 409
    assert body_of(other_body)["error"]["code"] == "idempotency_key_reused"
    # Another tenant with the same key and body gets a batch of its own
    theirs = post(invoke, {"files": FILES}, tenant="globex", key="k1")
    assert theirs["statusCode"] == 201 and body_of(theirs)["batch_id"] != first["batch_id"]
    assert len(batch_items(aws)) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "tab\there", "nul\x00"])
def test_a_malformed_key_is_400_invalid_idempotency_key(aws: Aws, invoke: Invoke, key: str) -> None:
    response = post(invoke, {"files": FILES}, key=key)
    assert response["statusCode"] == 400
    assert body_of(response)["error"]["code"] == "invalid_idempotency_key"
    assert batch_items(aws) == []


def test_a_key_of_255_printable_characters_is_accepted(aws: Aws, invoke: Invoke) -> None:
    key = "".join(chr(32 + i % 95) for i in range(255))
    assert post(invoke, {"files": FILES}, key=key)["statusCode"] == 201


def test_a_failed_request_is_not_remembered(aws: Aws, invoke: Invoke) -> None:
    # Given a name already taken
    holder = created(invoke, name="busy")
    # When a keyed create with that name fails, then the name is freed and the request repeated
    failed = post(invoke, {"files": FILES, "name": "busy"}, key="retry-me")
    assert body_of(failed)["error"]["code"] == "name_taken"
    runtime.repository().release_name("acme", "busy", batch_id=holder["batch_id"])
    retried = post(invoke, {"files": FILES, "name": "busy"}, key="retry-me")
    # Then the repeat runs (and is what is remembered from then on)
    assert retried["statusCode"] == 201
    assert post(invoke, {"files": FILES, "name": "busy"}, key="retry-me")["body"] == retried["body"]


def test_a_repeat_while_the_first_request_runs_is_409_request_in_progress(
    aws: Aws, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a create that, while it runs, sees the same request arrive again
    handler = load_handler("create_batch")
    original = handler._create
    during: list[dict[str, Any]] = []

    def create_and_meanwhile_repeat(*args: Any) -> Any:
        during.append(post(invoke, {"files": FILES}, key="slow"))
        return original(*args)

    monkeypatch.setattr(handler, "_create", create_and_meanwhile_repeat)
    first = post(invoke, {"files": FILES}, key="slow")
    # Then the repeat was told to retry, and the first request completed
    [repeat] = during
    assert repeat["statusCode"] == 409
    assert body_of(repeat)["error"]["code"] == "request_in_progress"
    headers = repeat.get("multiValueHeaders") or repeat["headers"]
    assert headers["Retry-After"] in ("1", ["1"])
    assert first["statusCode"] == 201 and len(batch_items(aws)) == 1


def test_an_answer_too_large_to_keep_is_replayed_from_the_batch_with_fresh_urls(
    aws: Aws, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    import filebatch.adapters.idempotency as idempotency

    # Given an idempotency store that can keep no whole answer
    monkeypatch.setattr(idempotency, "MAX_KEPT_CHARS", 10)
    body = {"files": FILES * 3, "name": "large", "metadata": {"k": "v"}}
    first = body_of(post(invoke, body, key="big"))
    # When the request is repeated
    again = post(invoke, body, key="big")
    # Then the answer is the same batch read back, with its uploads signed again
    assert again["statusCode"] == 201
    replayed = body_of(again)

    def without_urls(answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "files": [{k: v for k, v in f.items() if k != "upload"} for f in answer["files"]]}

    assert without_urls(replayed) == without_urls(first)
    assert all("X-Amz-Signature=" in f["upload"]["url"] for f in replayed["files"])
    assert len(batch_items(aws)) == 1


# ------------------------------------------------------------------------------ GET /v1/batches
def test_the_list_shows_the_tenants_batches_newest_first_and_no_one_elses(aws: Aws, invoke: Invoke) -> None:
    ours = [created(invoke, name=f"n{i}", metadata={"i": str(i)})["batch_id"] for i in range(3)]
    theirs = created(invoke, tenant="globex", name="n0")["batch_id"]
    status, page = listed(invoke)
    assert status == 200 and page["next_cursor"] is None
    assert [b["batch_id"] for b in page["items"]] == ours[::-1]
    # Each item is what the batch's status route answers
    path = f"/v1/batches/{ours[0]}"
    own = body_of(invoke("get_batch", api_event("GET", path, path_parameters={"batch_id": ours[0]})))
    assert page["items"][-1] == own
    # And globex sees only its own batch, whatever it asks for
    assert [b["batch_id"] for b in listed(invoke, "globex")[1]["items"]] == [theirs]
    assert [b["batch_id"] for b in listed(invoke, "globex", name="n")[1]["items"]] == [theirs]
    assert listed(invoke, "nobody")[1] == {"items": [], "next_cursor": None}


def test_the_list_pages_and_filters_by_status_and_name_prefix(aws: Aws, invoke: Invoke) -> None:
    ids = [created(invoke, name=name)["batch_id"] for name in ("nightly-1", "weekly", "nightly-2")]
    ids.append(created(invoke)["batch_id"])
    runtime.repository().finish_batch(
        "acme",
        ids[2],
        status=BatchStatus.COMPLETED,
        expected=frozenset({BatchStatus.AWAITING_UPLOAD}),
        at=datetime.now(UTC),
        due_at=None,
    )
    newest_first = ids[::-1]
    # Two at a time until the cursor runs out
    seen: list[str] = []
    cursor: str | None = None
    while True:
        status, page = listed(invoke, limit="2", **({"cursor": cursor} if cursor else {}))
        assert status == 200 and len(page["items"]) <= 2
        seen += [b["batch_id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first
    # Filters: a status, a name prefix, both
    assert [b["batch_id"] for b in listed(invoke, status="completed")[1]["items"]] == [ids[2]]
    assert [b["batch_id"] for b in listed(invoke, name="nightly-")[1]["items"]] == [ids[2], ids[0]]
    both = listed(invoke, name="nightly-", status="awaiting_upload")[1]
    assert [b["batch_id"] for b in both["items"]] == [ids[0]] and both["next_cursor"] is None


def test_a_filtered_list_that_reads_its_rounds_out_continues_where_the_index_stopped(
    aws: Aws, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    import filebatch.adapters.dynamodb as dynamodb

    # Given a list read 2 index items a round, 2 rounds a page, and one match among 7 batches
    monkeypatch.setattr(dynamodb, "_FILTERED_ROUND_ITEMS", 2)
    monkeypatch.setattr(dynamodb, "_LIST_ROUNDS", 2)
    ids = [created(invoke, name="match" if i == 1 else f"other-{i}")["batch_id"] for i in range(7)]
    # When pages are read with a filter: the first pages find nothing but say where to go on
    found: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        pages += 1
        _, page = listed(invoke, name="match", limit="1", **({"cursor": cursor} if cursor else {}))
        found += [b["batch_id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Then the one match is found, on a later page, and nothing twice
    assert found == [ids[1]] and pages > 1


def test_bad_list_requests_are_400(aws: Aws, invoke: Invoke) -> None:
    for _ in range(3):
        created(invoke)
    _, page = listed(invoke, limit="1")
    cursor = page["next_cursor"]
    for tenant, query, code in [
        ("acme", {"limit": "0"}, "validation_error"),
        ("acme", {"limit": "101"}, "validation_error"),
        ("acme", {"status": "asleep"}, "validation_error"),
        ("acme", {"name": ""}, "validation_error"),
        ("acme", {"cursor": "not-a-cursor"}, "invalid_cursor"),
        ("acme", {"cursor": cursor[:-1] + ("A" if cursor[-1] != "A" else "B")}, "invalid_cursor"),
        # Another tenant's cursor does not verify for this one
        ("globex", {"cursor": cursor}, "invalid_cursor"),
    ]:
        status, body = listed(invoke, tenant, **query)
        assert (status, body["error"]["code"]) == (400, code), query
