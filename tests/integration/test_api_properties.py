"""Property: whatever a client sends, every API handler answers < 500 in the API's error shape, and a
refused request writes nothing (handlers in-process under moto, real proxy event shape)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import BUCKET, TABLE, Aws, api_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# Near-valid create bodies find more than random JSON does.
file_specs = st.fixed_dictionaries(
    {
        "filename": st.text(max_size=300),
        "size": st.integers(min_value=-2, max_value=10**13) | st.text(max_size=5) | st.booleans(),
        "content_type": st.sampled_from(["image/png", "IMAGE/PNG", "", "a/b", "x" * 300])
        | st.text(max_size=10),
    },
    optional={"extra": json_values},
)
bodies = (
    json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {"files": st.lists(file_specs, max_size=3)},
        # Batch names and metadata (issue 8): near the rules' edges, or any JSON.
        optional={
            "name": st.text(max_size=130) | json_values,
            "metadata": st.dictionaries(st.text(max_size=66), st.text(max_size=258), max_size=17)
            | json_values,
            # -- stream EVENTS (no names that would need DNS: the tenant has no secret, so none is resolved)
            "webhook_url": st.sampled_from(
                [
                    "https://10.0.0.1/x",
                    "http://127.0.0.1:1/x",
                    "https://[::1]/",
                    "javascript:x",
                    "https://a b/",
                ]
            )
            | st.none(),
        },
    ).map(json.dumps)
    | st.text(max_size=200)
    | st.none()
)
content_types = st.sampled_from(
    ["application/json", "APPLICATION/JSON; charset=utf-8", "text/plain", "multipart/form-data", "", "*/*"]
) | st.text(max_size=30)
identifiers = st.sampled_from(["b-" + "0" * 32, "nope", "", "b-" + "a" * 31 + "g"]) | st.text(max_size=40)
queries = st.dictionaries(
    st.sampled_from(["limit", "cursor", "status", "name", "x"]),
    st.sampled_from(["failed", "completed"]) | st.text(max_size=40),
    max_size=3,
)

ROUTES = [
    ("create_batch", "POST", "/v1/batches", False),
    ("get_batch", "GET", "/v1/batches/{id}", True),
    ("list_results", "GET", "/v1/batches/{id}/results", True),
    ("list_uploads", "GET", "/v1/batches/{id}/uploads", True),
    # -- stream EVENTS
    ("rotate_webhook_secret", "POST", "/v1/webhooks/secret", False),
    ("delete_batch", "DELETE", "/v1/batches/{id}", True),
    ("export_results", "GET", "/v1/batches/{id}/export", True),
    ("list_batches", "GET", "/v1/batches", False),
    # -- issue 10, stream MULTIPART
    ("list_upload_parts", "GET", "/v1/batches/{id}/files/f00001/parts", True),
    ("complete_upload", "POST", "/v1/batches/{id}/files/f00001/complete", True),
    ("abort_upload", "POST", "/v1/batches/{id}/files/f00001/abort", True),
    ("sign_upload_parts", "POST", "/v1/batches/{id}/files/f00001/parts", True),
]


def stored_state(aws: Aws) -> tuple[int, int]:
    items = aws.dynamodb.scan(TableName=TABLE, Select="COUNT")["Count"]
    objects = aws.s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0)
    return items, objects


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(ROUTES),
    body=bodies,
    content_type=content_types,
    batch_id=identifiers,
    query=queries,
    base64_body=st.booleans(),
    idempotency_key=st.none() | st.text(max_size=300),
)
def test_no_input_makes_a_handler_fail_or_write_on_refusal(
    aws: Aws,
    invoke: Any,
    route: tuple[str, str, str, bool],
    body: str | None,
    content_type: str,
    batch_id: str,
    query: dict[str, str],
    base64_body: bool,
    idempotency_key: str | None,
) -> None:
    function, method, template_path, has_id = route
    path = template_path.replace("{id}", batch_id)
    event = api_event(
        method,
        path,
        body=body,
        path_parameters=({"batch_id": batch_id} | ({"file_id": "f00001"} if "/files/" in path else {}))
        if has_id
        else None,
        query=query or None,
    )
    event["headers"] = {**event["headers"], "Content-Type": content_type}
    if idempotency_key is not None:
        event["headers"]["Idempotency-Key"] = idempotency_key
        event["multiValueHeaders"] = {**event["multiValueHeaders"], "Idempotency-Key": [idempotency_key]}
    if base64_body and body is not None:
        import base64

        event["body"] = base64.b64encode(body.encode()).decode()
        event["isBase64Encoded"] = True
    before = stored_state(aws)
    # When the handler gets the request
    response = invoke(function, event)
    # Then it answers below 500, in the API's error shape when it refuses, and a refusal writes nothing
    assert response["statusCode"] < 500, response
    if response["statusCode"] >= 400:
        error = json.loads(response["body"])["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        assert stored_state(aws) == before
