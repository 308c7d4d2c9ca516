"""The API handlers in-process under moto: status codes, error bodies, tenant scoping."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests

from filebatch import runtime
from filebatch.config import get_settings
from filebatch.plans import PLANS
from tests.conftest import load_event
from tests.integration.conftest import API_ID, BUCKET, STAGE, TABLE, Aws, api_event

Invoke = Callable[[str, dict[str, Any]], Any]
FILES = [
    {"filename": "cat.png", "size": 5, "content_type": "image/png"},
    {"filename": "notes.txt", "size": 3, "content_type": "text/plain"},
]


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def create(invoke: Invoke, tenant: str = "acme", files: list[dict[str, Any]] = FILES) -> dict[str, Any]:
    response = invoke(
        "create_batch", api_event("POST", "/v1/batches", tenant_id=tenant, body={"files": files})
    )
    assert response["statusCode"] == 201, response["body"]
    return body_of(response)


def test_create_batch_answers_201_with_presigned_puts_and_stores_batch_files_and_manifest(
    aws: Aws, invoke: Invoke
) -> None:
    # Given the real API Gateway proxy event for POST /v1/batches
    event = load_event("apigw_rest_proxy_create_batch")
    # When the handler runs
    response = invoke("create_batch", event)
    # Then it answers 201 with a batch id and one presigned PUT per file
    assert response["statusCode"] == 201
    created = body_of(response)
    assert created["status"] == "awaiting_upload"
    assert [f["filename"] for f in created["files"]] == ["cat.png", "notes.txt"]
    upload = created["files"][0]["upload"]
    assert upload["method"] == "PUT"
    # The headers are signed: the type, and If-None-Match so the URL can only create the object
    assert upload["headers"] == {"Content-Type": "image/png", "If-None-Match": "*"}
    assert "X-Amz-Signature=" in upload["url"]
    assert "if-none-match" in upload["url"]
    assert f"uploads/acme/{created['batch_id']}/f00001" in upload["url"]
    # And the batch, both files and the manifest are stored, and the batch counts against the plan
    items = aws.dynamodb.scan(TableName="filebatch-test-table")["Items"]
    assert sorted(i["sk"]["S"] for i in items) == ["BATCH", "FILE#f00001", "FILE#f00002", "USAGE"]
    [usage] = [i for i in items if i["sk"]["S"] == "USAGE"]
    assert usage["open_batches"] == {"N": "1"}
    assert usage[f"files_{datetime.now(UTC):%Y_%m}"] == {"N": "2"}
    manifest = aws.s3.get_object(Bucket=BUCKET, Key=f"manifests/acme/{created['batch_id']}.json")
    assert json.loads(manifest["Body"].read()) == [{"file_id": "f00001"}, {"file_id": "f00002"}]


def test_created_batch_items_expire_after_the_upload_retention(
    aws: Aws, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the create function configured with a 7-day retention, as the template passes it,
    # and an API key issued to the tenant
    monkeypatch.setenv("RETENTION_DAYS", "7")
    get_settings.cache_clear()
    aws.api_key("acme")
    # When a batch of two files is created
    created = create(invoke)
    # Then the batch item and both file items carry the TTL attribute (a Number of epoch
    # seconds) 7 days after the batch's creation
    expected = int(datetime.fromisoformat(created["created_at"]).timestamp()) + 7 * 24 * 3600
    items = {i["sk"]["S"]: i for i in aws.dynamodb.scan(TableName="filebatch-test-table")["Items"]}
    assert set(items) == {"APIKEY", "BATCH", "FILE#f00001", "FILE#f00002", "USAGE"}
    for sk in ("BATCH", "FILE#f00001", "FILE#f00002"):
        assert items[sk]["expires_at"] == {"N": str(expected)}, sk
    # And the API key and the tenant's plan usage never expire
    assert "expires_at" not in items["APIKEY"]
    assert "expires_at" not in items["USAGE"]


def test_presigned_put_stores_the_bytes(aws: Aws, invoke: Invoke) -> None:
    # Given a created batch
    upload = create(invoke)["files"][0]["upload"]
    # When the client PUTs the bytes with the given headers
    response = requests.put(upload["url"], data=b"\x89PNG\r", headers=upload["headers"], timeout=10)
    # Then S3 has them under the file's key
    assert response.status_code == 200
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/")["Contents"]]
    assert len(keys) == 1
    assert keys[0].endswith("/f00001")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "malformed_json"),
        ("", "validation_error"),
        ({"files": []}, "validation_error"),
        ({"files": [{"filename": "a", "size": -1, "content_type": "image/png"}]}, "validation_error"),
        ({"files": FILES, "extra": True}, "validation_error"),
        ({"files": [{**FILES[0], "size": 10**12}]}, "file_too_large"),
    ],
)
def test_bad_create_requests_get_400_json_errors_and_write_nothing(
    aws: Aws, invoke: Invoke, body: Any, code: str
) -> None:
    # When a malformed or invalid request arrives
    response = invoke("create_batch", api_event("POST", "/v1/batches", body=body))
    # Then it is a 400 with a machine-readable code and a message, and nothing was stored
    assert response["statusCode"] == 400
    error = body_of(response)["error"]
    assert error["code"] == code
    assert error["message"]
    assert aws.dynamodb.scan(TableName="filebatch-test-table")["Count"] == 0


def test_validation_errors_say_where_the_problem_is(aws: Aws, invoke: Invoke) -> None:
    response = invoke(
        "create_batch",
        api_event("POST", "/v1/batches", body={"files": [{"filename": "a", "size": 0, "content_type": "x"}]}),
    )
    details = body_of(response)["error"]["details"]
    locations = {d["location"] for d in details}
    assert any(loc.endswith("files.0.size") for loc in locations)
    assert any(loc.endswith("files.0.content_type") for loc in locations)


def test_status_of_own_batch_and_404_for_another_tenant(aws: Aws, invoke: Invoke) -> None:
    # Given a batch created by acme
    batch_id = create(invoke)["batch_id"]
    path = f"/v1/batches/{batch_id}"
    # When acme and globex ask for it
    own = invoke("get_batch", api_event("GET", path, path_parameters={"batch_id": batch_id}))
    other = invoke(
        "get_batch", api_event("GET", path, tenant_id="globex", path_parameters={"batch_id": batch_id})
    )
    # Then acme sees its counts and globex gets a 404 JSON error
    assert own["statusCode"] == 200
    status = body_of(own)
    assert status["counts"] == {
        "total": 2,
        "awaiting_upload": 2,
        "uploaded": 0,
        "processing": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "upload_expired": 0,
        "skipped": 0,
    }
    assert status["progress_percentage"] == 0.0
    assert other["statusCode"] == 404
    assert body_of(other)["error"]["code"] == "batch_not_found"


def test_results_paginate_and_refuse_bad_cursors_and_limits(aws: Aws, invoke: Invoke) -> None:
    # Given a batch of three files
    batch_id = create(invoke, files=[{**FILES[0], "filename": f"{i}.png"} for i in range(3)])["batch_id"]
    path = f"/v1/batches/{batch_id}/results"
    params = {"batch_id": batch_id}
    # When results are read two at a time
    first = body_of(
        invoke("list_results", api_event("GET", path, path_parameters=params, query={"limit": "2"}))
    )
    second = body_of(
        invoke(
            "list_results",
            api_event(
                "GET", path, path_parameters=params, query={"limit": "2", "cursor": first["next_cursor"]}
            ),
        )
    )
    # Then the pages cover every file once, in order
    assert [i["filename"] for i in first["items"] + second["items"]] == ["0.png", "1.png", "2.png"]
    assert second["next_cursor"] is None
    assert first["items"][0]["status"] == "awaiting_upload"
    # And bad cursors and limits are 400s
    for query, code in (({"cursor": "nonsense"}, "invalid_cursor"), ({"limit": "0"}, "validation_error")):
        response = invoke("list_results", api_event("GET", path, path_parameters=params, query=query))
        assert response["statusCode"] == 400
        assert body_of(response)["error"]["code"] == code


def test_a_request_without_an_authorizer_tenant_is_refused(aws: Aws, invoke: Invoke) -> None:
    response = invoke("create_batch", api_event("POST", "/v1/batches", tenant_id=None, body={"files": FILES}))
    assert response["statusCode"] == 401
    assert body_of(response)["error"]["code"] == "unauthorized"


def test_authorizer_allows_a_known_key_with_its_tenant_and_refuses_others(aws: Aws, invoke: Invoke) -> None:
    # Given a key issued to acme on the starter plan, and the real TOKEN authorizer event
    key = aws.api_key("acme", plan="starter")
    event = load_event("apigw_token_authorizer")
    event["authorizationToken"] = f"Bearer {key}"
    # When the authorizer runs
    policy = invoke("authorize_request", event)
    # Then it allows every route of the stage and passes the tenant and its plan on
    assert policy["principalId"] == "acme"
    assert policy["context"] == {"tenant_id": "acme", "plan": "starter"}
    # And names the gateway API key under the starter usage plan, so API Gateway meters the request there
    apigateway = boto3.client("apigateway")
    [starter] = [p for p in apigateway.get_usage_plans()["items"] if p["name"] == "filebatch-starter"]
    keys = apigateway.get_usage_plan_keys(usagePlanId=starter["id"])["items"]
    assert [k["value"] for k in keys] == [policy["usageIdentifierKey"]]
    statement = policy["policyDocument"]["Statement"][0]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/dev/*/*"]
    # And an unknown key is refused the way API Gateway turns into a 401
    event["authorizationToken"] = "Bearer fbk_not-a-real-key-but-well-formed"
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        invoke("authorize_request", event)


def test_uploads_page_fresh_urls_for_files_still_awaiting_upload(aws: Aws, invoke: Invoke) -> None:
    # Given a batch of three files, the first of them uploaded and recorded
    files = [{**FILES[0], "filename": f"{i}.png"} for i in range(3)]
    created = create(invoke, files=files)
    batch_id = created["batch_id"]
    assert created["total_files"] == 3
    assert created["next_uploads_cursor"] is None
    runtime.repository().mark_uploaded(
        "acme", batch_id, "f00001", size=5, version_id=None, at=datetime.now(UTC)
    )
    path = f"/v1/batches/{batch_id}/uploads"
    params = {"batch_id": batch_id}
    # When the uploads are listed two files at a time
    first = body_of(
        invoke("list_uploads", api_event("GET", path, path_parameters=params, query={"limit": "2"}))
    )
    second = body_of(
        invoke(
            "list_uploads",
            api_event(
                "GET", path, path_parameters=params, query={"limit": "2", "cursor": first["next_cursor"]}
            ),
        )
    )
    # Then only the files still awaiting upload get (fresh) presigned PUTs
    assert [f["file_id"] for f in first["items"] + second["items"]] == ["f00002", "f00003"]
    assert second["next_cursor"] is None
    assert all("X-Amz-Signature=" in f["upload"]["url"] for f in first["items"] + second["items"])
    # And another tenant cannot list them
    other = invoke("list_uploads", api_event("GET", path, tenant_id="globex", path_parameters=params))
    assert other["statusCode"] == 404


def test_an_ended_batch_answers_409_for_upload_urls(aws: Aws, invoke: Invoke) -> None:
    # Given a batch closed before any of its files arrived (so it ended: expired)
    batch_id = create(invoke)["batch_id"]
    close = f"/v1/batches/{batch_id}/close"
    closed = invoke("close_batch", api_event("POST", close, path_parameters={"batch_id": batch_id}))
    assert body_of(closed)["status"] == "expired"
    # When the client asks for upload URLs
    path = f"/v1/batches/{batch_id}/uploads"
    response = invoke("list_uploads", api_event("GET", path, path_parameters={"batch_id": batch_id}))
    # Then it is told the batch has ended, not handed an empty page
    assert response["statusCode"] == 409
    assert body_of(response)["error"]["code"] == "batch_ended"


def test_cursor_keys_follow_a_secret_rotation(aws: Aws) -> None:
    # Given the cursor signing secret, read through its adapter
    from filebatch.adapters.secrets import SecretsManagerCursorKeys

    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="rotating-cursor-key", SecretString="first-key")["ARN"]
    assert SecretsManagerCursorKeys(arn, secrets).signing_keys() == [b"first-key"]
    # When a new value is put (what a rotation does)
    secrets.put_secret_value(SecretId=arn, SecretString="second-key")
    # Then the new value signs and the previous one still verifies
    assert SecretsManagerCursorKeys(arn, secrets).signing_keys() == [b"second-key", b"first-key"]


def test_a_page_cursor_for_another_batch_or_a_forged_one_is_a_400(aws: Aws, invoke: Invoke) -> None:
    # Given two batches of three files, and the first one's second-page cursor
    def batch() -> str:
        body = {"files": [{"filename": f"{i}.png", "size": 5, "content_type": "image/png"} for i in range(3)]}
        return json.loads(invoke("create_batch", api_event("POST", "/v1/batches", body=body))["body"])[
            "batch_id"
        ]

    first, second = batch(), batch()

    def results(batch_id: str, **query: str) -> dict[str, Any]:
        event = api_event(
            "GET", f"/v1/batches/{batch_id}/results", path_parameters={"batch_id": batch_id}, query=query
        )
        response = invoke("list_results", event)
        return {"status": response["statusCode"], **json.loads(response["body"])}

    cursor = results(first, limit="1")["next_cursor"]
    assert results(first, limit="1", cursor=cursor)["items"][0]["file_id"] == "f00002"
    # When it is used on the other batch, or altered to skip ahead
    foreign = results(second, cursor=cursor)
    forged = results(first, cursor=cursor.replace("f00001", "f00002"))
    # Then both are refused as invalid cursors
    assert (foreign["status"], foreign["error"]["code"]) == (400, "invalid_cursor")
    assert (forged["status"], forged["error"]["code"]) == (400, "invalid_cursor")


def test_a_free_tenant_over_its_open_batches_gets_a_429_with_retry_headers_until_one_ends(
    aws: Aws, invoke: Invoke
) -> None:
    # Given a free tenant with as many open batches as its plan allows
    limit = PLANS["free"].max_open_batches or 0
    batch_ids = [
        body_of(invoke("create_batch", api_event("POST", "/v1/batches", plan="free", body={"files": FILES})))[
            "batch_id"
        ]
        for _ in range(limit)
    ]
    # When it creates one more
    response = invoke("create_batch", api_event("POST", "/v1/batches", plan="free", body={"files": FILES}))
    # Then the handler answers 429 open_batch_limit with Retry-After and RateLimit headers
    assert response["statusCode"] == 429
    assert body_of(response)["error"]["code"] == "open_batch_limit"
    headers = response["multiValueHeaders"] if response.get("multiValueHeaders") else response["headers"]
    flat = {k: v[0] if isinstance(v, list) else v for k, v in headers.items()}
    assert flat["RateLimit-Limit"] == str(limit) and flat["RateLimit-Remaining"] == "0"
    assert int(flat["Retry-After"]) > 0
    # And a pro tenant at the same time is not limited by it
    assert (
        invoke("create_batch", api_event("POST", "/v1/batches", tenant_id="globex", body={"files": FILES}))[
            "statusCode"
        ]
        == 201
    )
    # When one of the free tenant's batches ends (cancelled before its files arrived)
    cancel = f"/v1/batches/{batch_ids[0]}/cancel"
    ended = invoke(
        "cancel_batch", api_event("POST", cancel, plan="free", path_parameters={"batch_id": batch_ids[0]})
    )
    assert body_of(ended)["status"] == "cancelled"
    # Then the tenant can create a batch again
    response = invoke("create_batch", api_event("POST", "/v1/batches", plan="free", body={"files": FILES}))
    assert response["statusCode"] == 201, response["body"]


def test_the_operator_command_issues_a_key_on_a_plan_that_the_authorizer_accepts(
    aws: Aws, invoke: Invoke, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the stack's table, API id and stage (its Outputs)
    from filebatch.admin import main as admin

    def create_key(tenant: str, plan: str) -> None:
        stack = ["--table", TABLE, "--api-id", API_ID, "--stage", STAGE]
        admin(["create-key", *stack, "--tenant", tenant, "--plan", plan])

    # When an operator issues a key for globex on the pro plan
    create_key("globex", "pro")
    key = capsys.readouterr().out.strip()
    # Then the authorizer accepts it as globex on pro
    event = load_event("apigw_token_authorizer")
    event["authorizationToken"] = f"Bearer {key}"
    policy = invoke("authorize_request", event)
    assert policy["context"] == {"tenant_id": "globex", "plan": "pro"}
    # And an unknown plan is refused before anything is issued
    with pytest.raises(SystemExit):
        create_key("x", "gold")
