"""The billing arithmetic of the cost model (filebatch_local.metering, filebatch_local.pricing),
checked against the worked examples in AWS's documentation and pricing pages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from filebatch_local.metering import (
    ChildExecution,
    LambdaUsage,
    Meter,
    SecondaryIndex,
    index_write_units,
    item_size,
    read_units,
    write_units,
)
from filebatch_local.pricing import (
    LAMBDA_MB_PER_VCPU,
    PRICES,
    SDK_CALL_DEFAULT_LATENCY_MS,
    SDK_CALL_LATENCY_MS,
    _map_states,
    express_gb_seconds,
    lambda_billed_ms,
    lambda_gb_seconds,
    lambda_wall_clock_lines,
    sdk_wait_ms,
    usage,
    vcpu_share,
)
from filebatch_local.template import Template

KB = 1024


@pytest.mark.parametrize(
    ("size", "consistency", "expected"),
    [
        # "reading a 3,500-byte item consumes the same throughput as reading a 4 KB item"
        (3500, "strong", 1.0),
        (3500, "eventual", 0.5),
        # "a strongly consistent read request of an 8 KB item requires two read request units, an
        # eventually consistent read of an 8 KB item requires one, a transactional read four"
        (8 * KB, "strong", 2.0),
        (8 * KB, "eventual", 1.0),
        (8 * KB, "transactional", 4.0),
        # "if you read a 10 KB item, DynamoDB rounds the item size to 12 KB"
        (10 * KB, "strong", 3.0),
        # An item that is not there still costs the minimum.
        (0, "eventual", 0.5),
    ],
)
def test_read_units_round_up_to_4_kb(size: int, consistency: str, expected: float) -> None:
    # Given an item of `size` bytes read with `consistency`
    # When its read request units are computed
    # Then they are DynamoDB's
    assert read_units(size, consistency=consistency) == expected


def test_batch_get_rounds_each_item_on_its_own() -> None:
    # Given BatchGetItem's example: items of 1.5 KB and 6.5 KB, strongly consistent
    # When each is counted as DynamoDB does (each item rounded up, then summed)
    units = read_units(int(1.5 * KB), consistency="strong") + read_units(int(6.5 * KB), consistency="strong")
    # Then it is 12 KB worth (4 KB + 8 KB), not 8 KB
    assert units == 3.0


@pytest.mark.parametrize(
    ("before", "after", "transactional", "expected"),
    [
        (0, 500, False, 1),  # a new 500-byte item: one WRU
        (0, int(1.5 * KB), False, 2),  # up to the next KB
        (int(3.5 * KB), 200, False, 4),  # an update that shrinks the item: the larger size counts
        (0, int(1.5 * KB), True, 4),  # in a transaction, twice
        (0, 0, False, 1),  # deleting nothing, or a failed condition on nothing, still costs 1
    ],
)
def test_write_units_take_the_larger_item_per_kb(
    before: int, after: int, transactional: bool, expected: int
) -> None:
    # Given the item's size before and after a write
    # When its write request units are computed
    # Then they follow DynamoDB's rule
    assert write_units(before, after, transactional=transactional) == expected


def test_item_size_counts_names_and_values_as_dynamodb_does() -> None:
    # Given an item with a string, a number, a boolean, a null, a list and a map
    item = {
        "pk": {"S": "batch#é"},  # 2 + 8 (é is 2 bytes in UTF-8)
        "count": {"N": "12345"},  # 5 + ceil(5 / 2) + 1 = 9
        "ok": {"BOOL": True},  # 2 + 1
        "gone": {"NULL": True},  # 4 + 1
        "tags": {"L": [{"S": "a"}, {"S": "bc"}]},  # 4 + 3 + (1 + 1) + (1 + 2)
        "meta": {"M": {"w": {"N": "100"}}},  # 4 + 3 + 1 + 1 + (ceil(1 / 2) + 1)
    }
    # When its size is computed
    # Then each part is counted per the item-size rules (numbers trimmed of leading/trailing zeros)
    assert item_size(item) == 10 + 9 + 3 + 5 + 12 + 11


GSI = SecondaryIndex("ByTenant", ("tenant_pk", "created_sk"), ("status",))
TABLE_KEYS = ("pk", "sk")


def _item(**attributes: str) -> dict[str, dict[str, str]]:
    return {name: {"S": value} for name, value in attributes.items()}


def test_index_writes_follow_the_projected_entry() -> None:
    # Given a batch item in a sparse GSI that projects `status`
    listed = _item(pk="b", sk="b", tenant_pk="t", created_sk="1", status="open", counter="1")
    # When only an attribute the index does not project changes
    # Then the index is not written
    assert index_write_units(GSI, TABLE_KEYS, listed, {**listed, "counter": {"S": "2"}}) == 0
    # When a projected attribute changes, one write
    assert index_write_units(GSI, TABLE_KEYS, listed, {**listed, "status": {"S": "done"}}) == 1
    # When the item enters or leaves the index, one write
    unlisted = _item(pk="b", sk="b", status="open")
    assert index_write_units(GSI, TABLE_KEYS, unlisted, listed) == 1
    assert index_write_units(GSI, TABLE_KEYS, listed, unlisted) == 1
    # When its index key changes, a delete and a put
    assert index_write_units(GSI, TABLE_KEYS, listed, {**listed, "created_sk": {"S": "2"}}) == 2
    # When it is in no index before or after, nothing
    assert index_write_units(GSI, TABLE_KEYS, unlisted, None) == 0


def test_lambda_gb_seconds_match_the_pricing_example() -> None:
    # Given Lambda's pricing example: 512 MB, 3 million invocations of 1 second each
    # When the compute is counted
    total = 3_000_000 * lambda_gb_seconds(512, 1000)
    # Then it is 1,500,000 GB-s
    assert total == pytest.approx(1_500_000)


@pytest.mark.parametrize(
    ("duration_ms", "memory_mb", "expected_gb_s"),
    [
        (100, 64, 64 / 1024 * 0.1),  # exactly one step, one chunk
        (101, 64, 64 / 1024 * 0.2),  # duration rounded up to the next 100 ms
        (1, 10, 64 / 1024 * 0.1),  # at least one 64 MB chunk and one 100 ms step
        (250, 65, 128 / 1024 * 0.3),  # memory in 64 MB chunks
    ],
)
def test_express_billing_increments(duration_ms: float, memory_mb: float, expected_gb_s: float) -> None:
    # Given an Express execution's duration and memory
    # When its billed GB-s are computed
    # Then duration goes up to 100 ms steps and memory to 64 MB chunks
    assert express_gb_seconds(duration_ms, memory_mb) == pytest.approx(expected_gb_s)


def test_child_execution_type_is_read_from_the_asl_at_any_depth() -> None:
    # Given a workflow whose Distributed Maps are at the top (EXPRESS children) and inside an inline
    # Map (no ExecutionType: STANDARD is the default), next to an inline Map
    states = {
        "Outer": {
            "Type": "Map",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                "States": {"Work": {"Type": "Pass", "End": True}},
            },
        },
        "Inline": {
            "Type": "Map",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "States": {
                    "Nested": {
                        "Type": "Map",
                        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "States": {}},
                    }
                },
            },
        },
    }
    # When the Distributed Maps are listed
    # Then each has its children's type and the inline Map is not one
    assert _map_states(states) == {"Outer": "EXPRESS", "Nested": "STANDARD"}


TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Architectures: [arm64]
Resources:
  Work:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.13
      Handler: app.handler
      CodeUri: work/
      MemorySize: 1024
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      Type: STANDARD
      Definition:
        StartAt: Files
        States:
          Files:
            Type: Map
            ItemProcessor:
              ProcessorConfig: {Mode: DISTRIBUTED, ExecutionType: EXPRESS}
              StartAt: Do
              States: {Do: {Type: Pass, End: true}}
            Next: Done
          Done: {Type: Succeed}
"""


def test_express_children_are_billed_per_request_and_gb_s_not_per_transition(tmp_path: Path) -> None:
    # Given a STANDARD workflow whose Distributed Map runs EXPRESS children, and a meter that saw
    # one execution (2 states), two children of 150 ms and two 150 ms invocations of a 1,024 MB arm64 function
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    template = Template(tmp_path / "template.yaml")
    (machine,) = (spec.name for spec in template.state_machines().values())
    meter = Meter()
    meter.requests[("states", "StartExecution")] = 1
    meter.parent_transitions[machine] = 2
    meter.children = [ChildExecution(machine, "Files", transitions=5, duration_ms=150) for _ in range(2)]
    meter.lambda_invocations["Work"] = 2
    meter.lambda_memory_mb["Work"] = 1024
    # 150 ms each once stretched to the 1,024 MB share of a vCPU, no SDK calls
    cpu_ms = 150 * 1024 / LAMBDA_MB_PER_VCPU
    meter.lambda_usage = [LambdaUsage("Work", 1024, False, wall_ms=900, cpu_ms=cpu_ms) for _ in range(2)]
    # When it is priced
    lines = {(line.service, line.item): line for line in usage(meter, template)}
    # Then the parent pays its start and states as transitions, the children none
    assert lines[("Step Functions", "parent executions: starts")].quantity == 1
    assert lines[("Step Functions", "parent executions: states entered")].quantity == 2
    assert not any("STANDARD children" in item for _, item in lines)
    # And each child one Express request and 64 MB for 200 ms
    assert lines[("Step Functions", "EXPRESS children: requests")].quantity == 2
    assert lines[("Step Functions", "EXPRESS children: GB-s (64 MB)")].quantity == pytest.approx(
        2 * 64 / 1024 * 0.2
    )
    # And the function its GB-s at the arm64 price
    compute = lines[("Lambda", "Work GB-s (1024 MB, arm64)")]
    assert compute.quantity == pytest.approx(0.3)
    assert compute.usd == pytest.approx(0.3 * PRICES["lambda.gb_s.arm64"].usd)


@pytest.mark.parametrize(
    ("memory_mb", "share"),
    [
        (LAMBDA_MB_PER_VCPU, 1.0),  # one full vCPU at 1,769 MB
        (LAMBDA_MB_PER_VCPU // 2 + 1, (LAMBDA_MB_PER_VCPU // 2 + 1) / LAMBDA_MB_PER_VCPU),  # about half
        (128, 128 / LAMBDA_MB_PER_VCPU),
        (10240, 1.0),  # six vCPUs, but single-threaded code uses one
    ],
)
def test_vcpu_share_is_proportional_to_memory_up_to_one_vcpu(memory_mb: int, share: float) -> None:
    # Given a function's memory size
    # When its CPU share is computed
    # Then it is memory / 1,769 MB, at most one vCPU
    assert vcpu_share(memory_mb) == pytest.approx(share)


def test_billed_duration_stretches_cpu_time_by_the_share_and_adds_sdk_waits() -> None:
    # Given an invocation at 512 MB that used 100 ms of CPU and made a DynamoDB call and two S3 calls
    calls = {"dynamodb": 1, "s3": 2}
    # When its billed duration is modelled
    billed = lambda_billed_ms(512, 100.0, calls)
    # Then it is the CPU time at 512/1,769 of a vCPU plus the tabled latencies, rounded up to the ms
    expected = (
        100.0 * LAMBDA_MB_PER_VCPU / 512 + SDK_CALL_LATENCY_MS["dynamodb"] + 2 * SDK_CALL_LATENCY_MS["s3"]
    )
    assert billed == math.ceil(expected)
    assert billed > expected - 1


@pytest.mark.parametrize(
    ("cpu_ms", "expected"),
    [
        (0.0, 1),  # nothing at all is still a millisecond
        (0.2, 1),
        (1.0, 1),  # exactly a millisecond is not rounded up to two
        (1.0001, 2),
        (41.5, 42),
    ],
)
def test_billed_duration_is_per_started_millisecond_at_least_one(cpu_ms: float, expected: int) -> None:
    # Given an invocation with a full vCPU and no SDK calls
    # When its billed duration is modelled
    # Then it is rounded up to the next millisecond, at least one
    assert lambda_billed_ms(LAMBDA_MB_PER_VCPU, cpu_ms, {}) == expected


def test_float_noise_does_not_add_a_millisecond() -> None:
    # Given CPU time that is a whole number of ms at the share, up to float error (0.1 + 0.2 style)
    cpu_ms = (0.1 + 0.2) * 1000 * 1024 / LAMBDA_MB_PER_VCPU
    # When it is billed at 1,024 MB
    # Then it is 300 ms, not 301
    assert lambda_billed_ms(1024, cpu_ms, {}) == 300


def test_sdk_waits_use_the_services_latency_and_a_default_for_others() -> None:
    # Given SDK calls to tabled services and to one that is not in the table
    calls = {"dynamodb": 3, "sqs": 1, "secretsmanager": 2}
    # When the time waiting on them is computed
    # Then each call counts its service's latency, the unknown service the default
    assert "secretsmanager" not in SDK_CALL_LATENCY_MS
    assert sdk_wait_ms(calls) == pytest.approx(
        3 * SDK_CALL_LATENCY_MS["dynamodb"] + SDK_CALL_LATENCY_MS["sqs"] + 2 * SDK_CALL_DEFAULT_LATENCY_MS
    )
    # And the table's latencies are plausible in-region round trips (a few ms to tens of ms)
    assert all(1 <= ms <= 100 for ms in SDK_CALL_LATENCY_MS.values())


def test_init_is_billed_once_per_environment_and_the_wall_clock_is_only_an_upper_bound(
    tmp_path: Path,
) -> None:
    # Given a 1,024 MB function: two environments started (200 ms of CPU each), three invocations
    # of 10 ms CPU and one DynamoDB call each, all slow on the wall clock (oversubscribed cores)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    template = Template(tmp_path / "template.yaml")
    meter = Meter()
    meter.lambda_invocations["Work"] = 3
    meter.lambda_memory_mb["Work"] = 1024
    meter.lambda_usage = [LambdaUsage("Work", 1024, True, wall_ms=2000, cpu_ms=200) for _ in range(2)] + [
        LambdaUsage("Work", 1024, False, wall_ms=700, cpu_ms=10, sdk_calls={"dynamodb": 1}) for _ in range(3)
    ]
    # When it is priced
    lines = {line.item: line for line in usage(meter, template)}
    # Then the invocations are billed the modelled duration
    invocation_ms = lambda_billed_ms(1024, 10, {"dynamodb": 1})
    assert lines["Work GB-s (1024 MB, arm64)"].quantity == pytest.approx(
        lambda_gb_seconds(1024, 3 * invocation_ms)
    )
    # And each environment's INIT once, on a line of its own
    init_ms = lambda_billed_ms(1024, 200, {})
    init_line = lines["Work INIT GB-s (1024 MB, arm64), 2 environments"]
    assert init_line.quantity == pytest.approx(lambda_gb_seconds(1024, 2 * init_ms))
    assert lines["Work invocations"].quantity == 3
    # And the wall-clock figure is kept apart, larger, and not in the bill
    upper = sum(line.usd for line in lambda_wall_clock_lines(meter, template))
    assert upper == pytest.approx(
        lambda_gb_seconds(1024, 2 * 2000 + 3 * 700) * PRICES["lambda.gb_s.arm64"].usd
    )
    billed = sum(line.usd for line in lines.values() if "GB-s" in line.item and line.service == "Lambda")
    assert billed < upper


def test_an_invocation_whose_environment_reported_nothing_is_billed_its_wall_time(tmp_path: Path) -> None:
    # Given an invocation whose environment died (no CPU figure reported)
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    template = Template(tmp_path / "template.yaml")
    meter = Meter()
    meter.lambda_invocations["Work"] = 1
    meter.lambda_memory_mb["Work"] = 1024
    meter.lambda_usage = [LambdaUsage("Work", 1024, False, wall_ms=1234.5, cpu_ms=None)]
    # When it is priced
    (line,) = (line for line in usage(meter, template) if "GB-s" in line.item)
    # Then it is billed up to where it ended, as Lambda does
    assert line.quantity == pytest.approx(lambda_gb_seconds(1024, 1235))
