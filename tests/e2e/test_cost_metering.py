"""The cost model's meter counts what a run really did: one batch of three files through a local stack
of its own (the meter sees that stack's work only), checked against the requests the test made and
the work the workflow must do for three files."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from bench.cost import wait_for_executions
from bench.e2e import make_files
from filebatch_local.metering import Meter, metering
from filebatch_local.pricing import billed_ms, per_service, usage, workflow_types
from tests.e2e.conftest import Stack, started_stack

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]

FILES = 3


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Meter, int]]:
    with started_stack(tmp_path_factory.mktemp("cost-stack"), {}, "cost") as stack:
        with metering(Meter()) as meter:
            batch_id = stack.submit(make_files(FILES))
            polls = 1
            while not stack.status(batch_id).json()["is_terminal"]:
                polls += 1
                time.sleep(0.2)
            wait_for_executions(stack.local)
        yield stack, meter, polls


def test_lambda_invocations_are_the_workflows_per_file_and_per_batch(
    metered: tuple[Stack, Meter, int],
) -> None:
    # Given one batch of three files run to the end under the meter
    _, meter, polls = metered
    invocations = meter.lambda_invocations
    # Then each per-file step ran once per file, the per-batch ones once, the status route once per poll
    assert invocations["ProcessFileFunction"] == FILES
    assert invocations["DescribeFileFunction"] == FILES
    assert invocations["RecordResultFunction"] == FILES
    assert invocations["FinalizeBatchFunction"] == 1
    assert invocations["CreateBatchFunction"] == 1
    assert invocations["GetBatchFunction"] == polls
    # And every invocation is recorded once, at its function's memory size
    runs = [u for u in meter.lambda_usage if not u.init]
    assert Counter(u.logical_id for u in runs) == invocations
    for logical_id in invocations:
        assert meter.lambda_memory_mb[logical_id] == metered[0].local.template.function(logical_id).memory_mb
    # And each function that ran wrote log lines (at least START, END and REPORT)
    assert set(meter.log_bytes) >= set(invocations)


def test_each_invocation_reports_its_cpu_time_and_sdk_calls(metered: tuple[Stack, Meter, int]) -> None:
    # Given the run under the meter
    _, meter, _ = metered
    runs = [u for u in meter.lambda_usage if not u.init]
    # Then every invocation reported the CPU time its environment used, and is billed at least a ms
    for run in runs:
        assert run.cpu_ms is not None and run.cpu_ms > 0
        assert billed_ms(run) >= 1
    # And each ProcessFile read the file from S3 and wrote its outcome to DynamoDB (a transaction)
    process = [u for u in runs if u.logical_id == "ProcessFileFunction"]
    assert len(process) == FILES
    for run in process:
        assert run.sdk_calls.get("s3", 0) >= 1
        assert run.sdk_calls.get("dynamodb", 0) >= 1
    # And each DescribeFile read the file, each RecordResult wrote to DynamoDB
    for run in runs:
        if run.logical_id == "DescribeFileFunction":
            assert run.sdk_calls.get("s3", 0) >= 1
        if run.logical_id == "RecordResultFunction":
            assert run.sdk_calls.get("dynamodb", 0) >= 1
    # And no service got fewer requests than the handlers counted calls to it (the server also sees
    # the workflow's own calls and the client's): the two counts agree on what the handlers did
    counted: Counter[str] = Counter()
    for run in meter.lambda_usage:
        counted.update(run.sdk_calls)
    received: Counter[str] = Counter()
    for (service, _), n in meter.requests.items():
        received[service] += n
    for service, n in counted.items():
        assert received[service] >= n, service
    # And each environment's INIT was metered with its CPU time (imports), once, when it served its
    # first invocation: never more INITs than invocations, none for a function that was not invoked
    inits = [u for u in meter.lambda_usage if u.init]
    for init in inits:
        assert init.cpu_ms is not None and init.cpu_ms > 0
    init_counts = Counter(u.logical_id for u in inits)
    for logical_id, n in init_counts.items():
        assert n <= meter.lambda_invocations[logical_id], logical_id


def test_requests_through_api_gateway_and_s3_are_the_clients(metered: tuple[Stack, Meter, int]) -> None:
    # Given the run (one create, the uploads, `polls` status requests)
    _, meter, polls = metered
    # Then API Gateway saw the create and each status poll
    assert meter.api_requests == 1 + polls
    # And S3 saw each presigned upload; only those matched the upload rule, each one SQS delivery
    assert meter.units[("s3 detail", "PutObject uploads/")] == FILES
    assert meter.requests[("sqs", "SendMessage (EventBridge target)")] == FILES
    # And the batch's workflow was started once
    assert meter.requests[("states", "StartExecution")] == 1


def test_step_functions_transitions_follow_the_asl(metered: tuple[Stack, Meter, int]) -> None:
    stack, meter, _ = metered
    template = stack.local.template
    machines, child_types = workflow_types(template)
    (machine,) = machines
    definition = json.loads(template.state_machine("ProcessBatchStateMachine").definition)
    # Then the parent entered each of its top-level states once (nothing failed, nothing retried)
    assert meter.parent_transitions == {machine: len(definition["States"])}
    (child_type,) = set(child_types.values())
    # And each child is attributed to its Distributed Map state (which decides how it is billed)
    assert {(c.state_machine, c.map_state) for c in meter.children} == set(child_types)
    if child_type == "STANDARD":
        # And each file ran in a child of its own through ProcessFile, DescribeFile, RecordSuccess
        assert len(meter.children) == FILES
        assert [c.transitions for c in meter.children] == [3] * FILES
    else:
        # And the files ran in batched children, each of which took some time
        assert 1 <= len(meter.children) <= FILES
        assert all(c.duration_ms > 0 for c in meter.children)


def test_dynamodb_units_and_the_bill_are_counted(metered: tuple[Stack, Meter, int]) -> None:
    stack, meter, _ = metered
    # Then writes and reads were metered in request units (a write is at least 1 WRU)
    write_operations = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
    writes = sum(n for (s, op), n in meter.requests.items() if s == "dynamodb" and op in write_operations)
    assert meter.units[("dynamodb", "WRU")] >= writes > 0
    assert meter.units[("dynamodb", "RRU")] > 0
    # And the bill has a positive amount for each service the run used
    assert stack.local.template is not None
    services = per_service(usage(meter, stack.local.template))
    for service in ("Lambda", "Step Functions", "DynamoDB", "S3", "SQS", "API Gateway", "CloudWatch Logs"):
        assert services[service] > 0
