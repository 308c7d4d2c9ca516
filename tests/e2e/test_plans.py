"""Plans at the gateway: every request is metered under the usage plan of its key's plan, as API
Gateway meters it (the local stack reads the usage plans and keys from moto's API Gateway)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import requests

from tests.e2e.conftest import Stack, wait_for
from tests.e2e.test_api_contract import assert_json_error

pytestmark = pytest.mark.e2e

BURST = 40
# A cheap request: the batch does not exist (404), and it is metered all the same.
MISSING_BATCH = f"/v1/batches/b-{'0' * 32}"


def get(stack: Stack, key: str) -> requests.Response:
    return requests.get(f"{stack.api_url}{MISSING_BATCH}", headers=stack.headers(key), timeout=60)


def test_the_same_burst_is_throttled_on_the_free_plan_and_not_on_pro(stack: Stack) -> None:
    # Given a free key (bucket of 10, 5 a second) and a pro key (bucket of 100), each authorized
    # once already, so that the burst reaches the usage plans at once (the authorizer's answer
    # is cached per key)
    free = stack.local.create_api_key("burst-free", plan="free")
    pro = stack.local.create_api_key("burst-pro", plan="pro")
    for key in (free, pro):
        assert get(stack, key).status_code == 404
    # When both send the same burst of requests at the same moment
    start = threading.Barrier(2 * BURST, timeout=60)

    def send(key: str) -> requests.Response:
        start.wait()
        return get(stack, key)

    with ThreadPoolExecutor(max_workers=2 * BURST) as pool:
        sent = [(key, pool.submit(send, key)) for _ in range(BURST) for key in (free, pro)]
        responses: dict[str, list[requests.Response]] = {free: [], pro: []}
        for key, future in sent:
            responses[key].append(future.result())
    # Then the free key is throttled: 429 with Retry-After, in the API's JSON error shape
    throttled = [r for r in responses[free] if r.status_code == 429]
    assert throttled, [r.status_code for r in responses[free]]
    assert {r.status_code for r in responses[free]} <= {404, 429}
    for response in throttled:
        assert_json_error(response, 429, "throttled")
        assert response.headers["Retry-After"] == "1"
    # And the pro key is never throttled: every request reached the function
    assert [r.status_code for r in responses[pro]] == [404] * BURST


def test_a_key_whose_usage_key_left_its_plan_is_refused_with_a_json_403(stack: Stack) -> None:
    # Given a starter key that works
    from filebatch.adapters.dynamodb import DynamoBatchRepository
    from filebatch.services.auth import hash_api_key

    key = stack.local.create_api_key("left-its-plan", plan="starter")
    assert get(stack, key).status_code == 404
    # When an operator removes its usage key from its usage plan in API Gateway
    table = boto3.resource(
        "dynamodb",
        endpoint_url=stack.local.moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # dummy credentials for moto
    ).Table(stack.local.outputs["TableName"])
    record = DynamoBatchRepository(table).get_api_key(hash_api_key(key))
    assert record is not None and record.usage_key_id is not None
    apigateway = stack.local.client("apigateway")
    (usage_plan,) = apigateway.get_usage_plans(keyId=record.usage_key_id)["items"]
    apigateway.delete_usage_plan_key(usagePlanId=usage_plan["id"], keyId=record.usage_key_id)
    # Then the gateway refuses the key (once it has read the plans again: within seconds) with a
    # 403 in the API's JSON error shape, and the function no longer sees its requests
    (refused,) = wait_for(  # a list: a 4xx Response is falsy
        lambda: [response] if (response := get(stack, key)).status_code == 403 else None,
        10,
        "the key to be refused",
    )
    assert_json_error(refused, 403, "forbidden")
    log = stack.local.state_dir / "logs" / "GetBatchFunction.log"
    invocations = log.read_text().count("START RequestId")
    assert_json_error(get(stack, key), 403, "forbidden")
    assert log.read_text().count("START RequestId") == invocations
