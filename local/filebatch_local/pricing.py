"""What a metered local run (filebatch_local.metering) would cost on AWS: the price table, in one
place, and the billing arithmetic of each service.

Prices are us-east-1, on-demand, without free tiers (they are per account, not per file) and without
storage (it depends on retention, not on the run). Each price says where it comes from; all were read
from the AWS pricing pages named, as published in November 2026.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from filebatch_local.metering import LambdaUsage, Meter
from filebatch_local.template import Template, walk_states


@dataclass(frozen=True)
class Price:
    usd: float  # per one unit
    unit: str


PRICES: dict[str, Price] = {
    # aws.amazon.com/lambda/pricing: $0.20 per 1M requests; Arm $0.0000133334 per GB-s (first 7.5
    # billion GB-s a month), x86 $0.0000166667.
    "lambda.request": Price(0.20 / 1e6, "request"),
    "lambda.gb_s.arm64": Price(0.0000133334, "GB-s"),
    "lambda.gb_s.x86_64": Price(0.0000166667, "GB-s"),
    # aws.amazon.com/step-functions/pricing: Standard $0.025 per 1,000 state transitions (retries
    # included); Express $1.00 per 1M requests and $0.00001667 per GB-s (first 1,000 h of GB), the
    # duration rounded up to 100 ms and the memory billed in 64 MB chunks.
    "states.transition": Price(0.025 / 1000, "transition"),
    "states.express_request": Price(1.00 / 1e6, "request"),
    "states.express_gb_s": Price(0.00001667, "GB-s"),
    # aws.amazon.com/dynamodb/pricing/on-demand (since 1 Nov 2024): $0.625 per 1M write request
    # units, $0.125 per 1M read request units, Standard table class.
    "dynamodb.wru": Price(0.625 / 1e6, "WRU"),
    "dynamodb.rru": Price(0.125 / 1e6, "RRU"),
    # aws.amazon.com/s3/pricing, S3 Standard: PUT, COPY, POST, LIST $0.005 per 1,000; GET, SELECT
    # and all other requests $0.0004 per 1,000; DELETE and CANCEL free.
    "s3.tier1": Price(0.005 / 1000, "request"),
    "s3.tier2": Price(0.0004 / 1000, "request"),
    # aws.amazon.com/sqs/pricing: standard queues $0.40 per 1M requests (each 64 KB chunk one).
    "sqs.request": Price(0.40 / 1e6, "request"),
    # aws.amazon.com/eventbridge/pricing: custom events $1.00 per 1M (64 KB chunks); events from AWS
    # services (S3's Object Created included) are free.
    "events.custom": Price(1.00 / 1e6, "event"),
    "events.aws_service": Price(0.0, "event"),
    # aws.amazon.com/api-gateway/pricing: REST APIs $3.50 per 1M requests (first 333M a month).
    "apigateway.rest_request": Price(3.50 / 1e6, "request"),
    # aws.amazon.com/cloudwatch/pricing: logs ingested (Standard class) $0.50 per GB.
    "logs.ingest_gb": Price(0.50, "GB"),
}

# S3 operations billed at the PUT/COPY/POST/LIST rate; DELETE-type ones are free; the rest are GET-type.
S3_TIER1 = {
    "PutObject",
    "CopyObject",
    "PostObject",
    "UploadPart",
    "CreateMultipartUpload",
    "CompleteMultipartUpload",
    "ListObjects",
    "ListParts",
    "PutBucket*",
}
S3_FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload"}
EXPRESS_MEMORY_CHUNK_MB = 64
EXPRESS_DURATION_STEP_MS = 100

# Lambda's billed duration is not measured locally but modelled (lambda_billed_ms): the local wall
# time measures how oversubscribed the 2 cores were, not what Lambda would bill.
# docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html: CPU is allocated in proportion to
# memory, one full vCPU at 1,769 MB. Code that runs on one thread cannot use more than one.
LAMBDA_MB_PER_VCPU = 1769
# The time a handler waits on one AWS SDK call, in the same region (ms): a request's round trip and
# the service's own latency, not measured (no AWS here) but assumed, by the service's endpoint prefix.
SDK_CALL_LATENCY_MS: dict[str, float] = {
    # "single-digit millisecond performance at any scale" (aws.amazon.com/dynamodb); a transaction
    # of two items is in the same range.
    "dynamodb": 5,
    # S3 Express One Zone is "single-digit millisecond ... up to 10x faster than S3 Standard"
    # (aws.amazon.com/s3/storage-classes/express-one-zone): tens of ms for a small GET or PUT.
    "s3": 20,
    # SQS send/receive/delete and EventBridge PutEvents: ~10 ms each (assumption, commonly observed
    # in-region figures; neither service publishes a latency).
    "sqs": 10,
    "events": 10,
    # Step Functions StartExecution and other control-plane-style calls (Secrets Manager, API
    # Gateway's key management): 20 ms (assumption).
    "states": 20,
}
SDK_CALL_DEFAULT_LATENCY_MS = 20.0  # any service not in the table


# ------------------------------------------------------------------------ billing arithmetic
def lambda_gb_seconds(memory_mb: int, billed_ms: int) -> float:
    """Lambda compute: the configured memory (GB, 1,024 MB each) times the billed duration (s)."""
    return memory_mb / 1024 * billed_ms / 1000


def vcpu_share(memory_mb: int) -> float:
    """The share of one vCPU a single-threaded handler gets at `memory_mb`: memory / 1,769 MB,
    at most one vCPU."""
    return min(1.0, memory_mb / LAMBDA_MB_PER_VCPU)


def sdk_wait_ms(sdk_calls: dict[str, int]) -> float:
    """The time spent waiting on AWS SDK calls, from the assumed per-call latency of each service."""
    return sum(
        n * SDK_CALL_LATENCY_MS.get(service, SDK_CALL_DEFAULT_LATENCY_MS) for service, n in sdk_calls.items()
    )


def lambda_billed_ms(memory_mb: int, cpu_ms: float, sdk_calls: dict[str, int]) -> int:
    """Modelled billed duration of one invocation (or INIT): the CPU time it used, stretched by the
    CPU share its memory size gets, plus its SDK calls' waits; per started millisecond, at least 1."""
    duration = cpu_ms / vcpu_share(memory_mb) + sdk_wait_ms(sdk_calls)
    # Rounded to a nanosecond first, so that float noise (100.0000000001) does not add a millisecond.
    return max(1, math.ceil(round(duration, 6)))


def billed_ms(usage: LambdaUsage) -> int:
    """What one invocation or INIT is billed in the model; the wall time when the environment
    reported nothing (it died or timed out: Lambda bills it up to that point)."""
    if usage.cpu_ms is None:
        return wall_clock_ms(usage)
    return lambda_billed_ms(usage.memory_mb, usage.cpu_ms, usage.sdk_calls)


def wall_clock_ms(usage: LambdaUsage) -> int:
    """The upper bound: the local wall time, per started millisecond."""
    return max(1, math.ceil(usage.wall_ms))


def express_gb_seconds(duration_ms: float, memory_mb: float = EXPRESS_MEMORY_CHUNK_MB) -> float:
    """One Express execution's billed GB-s: duration up to the next 100 ms, memory up to the next
    64 MB chunk (at least one)."""
    billed_ms = max(1, math.ceil(duration_ms / EXPRESS_DURATION_STEP_MS)) * EXPRESS_DURATION_STEP_MS
    billed_mb = max(1, math.ceil(memory_mb / EXPRESS_MEMORY_CHUNK_MB)) * EXPRESS_MEMORY_CHUNK_MB
    return billed_mb / 1024 * billed_ms / 1000


def _map_states(states: dict[str, Any]) -> dict[str, str]:
    """Every Distributed Map state (at any depth) → its children's ExecutionType."""
    found: dict[str, str] = {}
    for _, name, state in walk_states(states):
        config = (state.get("ItemProcessor") or state.get("Iterator") or {}).get("ProcessorConfig") or {}
        if state.get("Type") == "Map" and config.get("Mode") == "DISTRIBUTED":
            found[name] = str(config.get("ExecutionType", "STANDARD"))
    return found


def workflow_types(template: Template) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """From the template: each state machine's type by name, and the ExecutionType of each
    Distributed Map's children by (state machine name, Map state name), read from the ASL."""
    machines: dict[str, str] = {}
    children: dict[tuple[str, str], str] = {}
    for spec in template.state_machines().values():
        machines[spec.name] = spec.type.upper()
        for state, kind in _map_states(json.loads(spec.definition).get("States") or {}).items():
            children[(spec.name, state)] = kind.upper()
    return machines, children


# ------------------------------------------------------------------------ the bill
@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float
    price: str  # key of PRICES

    @property
    def usd(self) -> float:
        return self.quantity * PRICES[self.price].usd


def usage(meter: Meter, template: Template) -> list[Line]:
    """Everything the meter counted, as billable quantities with their price."""
    lines: list[Line] = []
    requests = dict(meter.requests)
    units = dict(meter.units)

    # Lambda: the modelled duration (lambda_wall_clock_lines gives the wall-time upper bound)
    lines += _lambda_lines(meter, template, billed_ms)

    # Step Functions
    machines, child_types = workflow_types(template)
    # Step Functions signs its requests as service "states".
    starts = requests.get(("states", "StartExecution"), 0) + requests.get(("states", "StartSyncExecution"), 0)
    parent_states = sum(meter.parent_transitions.values())
    if any(kind == "EXPRESS" for kind in machines.values()):
        raise NotImplementedError("an EXPRESS state machine at the top: meter its executions' durations")
    lines.append(Line("Step Functions", "parent executions: starts", starts, "states.transition"))
    lines.append(
        Line("Step Functions", "parent executions: states entered", parent_states, "states.transition")
    )
    standard_children = [c for c in meter.children if _child_type(c, child_types) == "STANDARD"]
    express_children = [c for c in meter.children if _child_type(c, child_types) == "EXPRESS"]
    if standard_children:
        lines.append(
            Line("Step Functions", "STANDARD children: starts", len(standard_children), "states.transition")
        )
        lines.append(
            Line(
                "Step Functions",
                "STANDARD children: states entered",
                sum(c.transitions for c in standard_children),
                "states.transition",
            )
        )
    if express_children:
        lines.append(
            Line(
                "Step Functions",
                "EXPRESS children: requests",
                len(express_children),
                "states.express_request",
            )
        )
        lines.append(
            Line(
                "Step Functions",
                "EXPRESS children: GB-s (64 MB)",
                sum(express_gb_seconds(c.duration_ms) for c in express_children),
                "states.express_gb_s",
            )
        )

    # DynamoDB
    for unit, price in (("WRU", "dynamodb.wru"), ("WRU (indexes)", "dynamodb.wru"), ("RRU", "dynamodb.rru")):
        if units.get(("dynamodb", unit)):
            lines.append(Line("DynamoDB", unit, units[("dynamodb", unit)], price))

    # S3
    tier1 = sum(n for (s, op), n in requests.items() if s == "s3" and op in S3_TIER1)
    tier2 = sum(n for (s, op), n in requests.items() if s == "s3" and op not in S3_TIER1 | S3_FREE)
    lines.append(Line("S3", "PUT/COPY/POST/LIST requests", tier1, "s3.tier1"))
    lines.append(Line("S3", "GET and other requests", tier2, "s3.tier2"))

    # SQS (empty receives are the pollers' idle cost: per stack, not per file)
    lines.append(
        Line(
            "SQS", "requests (64 KB chunks)", units.get(("sqs", "requests (64 KB chunks)"), 0), "sqs.request"
        )
    )

    # EventBridge
    lines.append(
        Line(
            "EventBridge",
            "custom events (64 KB chunks)",
            units.get(("events", "custom events (64 KB chunks)"), 0),
            "events.custom",
        )
    )
    lines.append(
        Line(
            "EventBridge",
            "S3 events to the bus",
            units.get(("events", "S3 events to EventBridge"), 0),
            "events.aws_service",
        )
    )

    # API Gateway
    lines.append(Line("API Gateway", "REST requests", meter.api_requests, "apigateway.rest_request"))

    # CloudWatch Logs
    lines.append(
        Line(
            "CloudWatch Logs",
            "Lambda log ingestion (GB)",
            sum(meter.log_bytes.values()) / 1e9,
            "logs.ingest_gb",
        )
    )
    return lines


def _lambda_lines(meter: Meter, template: Template, duration: Callable[[LambdaUsage], int]) -> list[Line]:
    lines: list[Line] = []
    for logical_id in sorted(meter.lambda_memory_mb):
        memory = meter.lambda_memory_mb[logical_id]
        architecture = str((template.properties(logical_id).get("Architectures") or ["x86_64"])[0])
        runs = [u for u in meter.lambda_usage if u.logical_id == logical_id]
        if meter.lambda_invocations[logical_id]:
            lines.append(
                Line(
                    "Lambda",
                    f"{logical_id} invocations",
                    meter.lambda_invocations[logical_id],
                    "lambda.request",
                )
            )
        for init, label in ((False, ""), (True, " INIT")):
            phase = [u for u in runs if u.init == init]
            if phase:
                gb_s = lambda_gb_seconds(memory, sum(duration(u) for u in phase))
                what = f"{logical_id}{label} GB-s ({memory} MB, {architecture})"
                if init:
                    what += f", {len(phase)} environment{'s' if len(phase) != 1 else ''}"
                lines.append(Line("Lambda", what, gb_s, f"lambda.gb_s.{architecture}"))
    return lines


def lambda_wall_clock_lines(meter: Meter, template: Template) -> list[Line]:
    """Lambda compute billed at the local wall time of each invocation and INIT, shown next to the
    model, not added to it: an upper bound in aggregate (the local cores run many environments at
    once), not for every invocation (a lone one at 512 MB gets a whole local core, 0.29 vCPU on
    Lambda)."""
    return [line for line in _lambda_lines(meter, template, wall_clock_ms) if "GB-s" in line.item]


def lambda_durations(meter: Meter) -> dict[str, dict[str, float]]:
    """Per function, per invocation on average: CPU ms, SDK calls, modelled billed ms, wall ms;
    and the INITs (count, average CPU ms and billed ms)."""
    summary: dict[str, dict[str, float]] = {}
    for logical_id in sorted(meter.lambda_memory_mb):
        figures: dict[str, float] = {}
        for init, prefix in ((False, ""), (True, "init_")):
            phase = [u for u in meter.lambda_usage if u.logical_id == logical_id and u.init == init]
            if not phase:
                continue
            measured = [u for u in phase if u.cpu_ms is not None]
            figures[f"{prefix}count"] = len(phase)
            figures[f"{prefix}cpu_ms"] = sum(u.cpu_ms or 0.0 for u in measured) / max(1, len(measured))
            figures[f"{prefix}sdk_calls"] = sum(sum(u.sdk_calls.values()) for u in phase) / len(phase)
            figures[f"{prefix}billed_ms"] = sum(billed_ms(u) for u in phase) / len(phase)
            figures[f"{prefix}wall_ms"] = sum(u.wall_ms for u in phase) / len(phase)
        summary[logical_id] = figures
    return summary


def _child_type(child: Any, child_types: dict[tuple[str, str], str]) -> str:
    kind = child_types.get((child.state_machine, child.map_state or ""))
    if kind is None:
        # The Map's name was not known at run time: one Distributed Map in that machine decides.
        candidates = {k for (machine, _), k in child_types.items() if machine == child.state_machine}
        if len(candidates) != 1:
            raise ValueError(f"cannot tell the ExecutionType of a child of {child.state_machine}")
        kind = candidates.pop()
    return kind


def per_service(lines: list[Line]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for line in lines:
        totals[line.service] += line.usd
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))
