"""Metering of a local run: what each AWS service would bill for it, counted as it happens.

Enabled by bench/cost.py only (`with metering(meter):` around a run); with no meter active every
hook returns at once. What is counted, and where:

- every request moto's server receives (boto3 clients of the handlers in their worker processes,
  the Step Functions interpreter's own clients, presigned uploads): a wrapper around moto's WSGI
  dispatcher, by service (from the SigV4 credential scope) and operation;
- DynamoDB read and write request units from the real item sizes, as DynamoDB bills them
  (on-demand): the items before and after each write are read from moto's tables under one lock, so
  that no other write comes in between;
- SQS requests in 64 KB chunks; EventBridge entries in 64 KB chunks, S3 events to the bus and the
  rules' deliveries to SQS (moto makes those in-process, without HTTP);
- Lambda invocations and environment starts (INIT) per function, each with what the environment
  reported it used: CPU time, wall time, AWS SDK calls by service (hooks in lambdas.FunctionPool,
  measured by _worker.py); log bytes per function (hook in lambdas.LogSink), API Gateway requests
  (hook in api.ApiGateway);
- Step Functions: states entered (transitions, retries included) by the parent and by each
  Distributed Map child, and each child's duration (patches on moto's interpreter). Whether a
  child is billed as a STANDARD or an EXPRESS execution is decided later, from the ASL
  (filebatch_local.pricing), so the meter needs no knowledge of the workflow.

Prices and the arithmetic of billing units live in filebatch_local.pricing.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

# SQS and EventBridge bill each 64 KB chunk of a payload as one request / event.
CHUNK_BYTES = 64 * 1024
# CloudWatch Logs counts each log event as its message plus 26 bytes (PutLogEvents' size rule).
LOG_EVENT_OVERHEAD_BYTES = 26
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_QUERY_SCOPE = re.compile(r"^[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request$")
_LAMBDA_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
log = logging.getLogger("filebatch_local")
ACCOUNT_ID = "123456789012"  # moto's default account: the local stack's


# ------------------------------------------------------------------------ DynamoDB unit rules
def _number_size(text: str) -> int:
    # A number takes 1 byte per two significant digits, plus 1 (leading and trailing zeros trimmed).
    digits = text.lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0")
    return math.ceil(len(digits) / 2) + 1 if digits else 1


def attribute_value_size(value: dict[str, Any]) -> int:
    """The size of one DynamoDB AttributeValue (wire JSON form) as DynamoDB counts it."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return _number_size(str(inner))
    if kind == "B":
        return len(inner) * 3 // 4 - str(inner).count("=") if isinstance(inner, str) else len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(v).encode()) for v in inner)
    if kind == "NS":
        return sum(_number_size(str(v)) for v in inner)
    if kind == "BS":
        return sum(attribute_value_size({"B": v}) for v in inner)
    if kind == "L":
        # 3 bytes for the list, 1 per element.
        return 3 + sum(1 + attribute_value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_value_size(v) for k, v in inner.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: dict[str, Any] | None) -> int:
    """An item's size: the UTF-8 length of each attribute name plus its value's size."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_value_size(value) for name, value in item.items())


def write_units(size_before: int, size_after: int, *, transactional: bool = False) -> int:
    """Write request units of one item write: the larger of the item before and after, per started
    KB (a write to nothing, or a failed condition, still costs 1); twice that in a transaction."""
    units = max(1, math.ceil(max(size_before, size_after) / 1024))
    return units * 2 if transactional else units


def read_units(size: int, *, consistency: str = "eventual") -> float:
    """Read request units of reading `size` bytes: per started 4 KB (at least one), half for an
    eventually consistent read, twice for a transactional one."""
    units = max(1, math.ceil(size / 4096))
    return {"eventual": units / 2, "strong": float(units), "transactional": units * 2.0}[consistency]


@dataclass(frozen=True)
class SecondaryIndex:
    name: str
    key_attributes: tuple[str, ...]
    projected: tuple[str, ...] | None  # None: ALL


def index_entry(index: SecondaryIndex, table_keys: Iterable[str], item: dict[str, Any] | None) -> Any:
    """The item's entry in a (sparse) global secondary index, or None when it has none."""
    if not item or any(a not in item for a in index.key_attributes):
        return None
    if index.projected is None:
        return item
    wanted = {*index.key_attributes, *table_keys, *index.projected}
    return {k: v for k, v in item.items() if k in wanted}


def index_write_units(
    index: SecondaryIndex,
    table_keys: Iterable[str],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> int:
    """What a table write costs in the index: nothing when the entry is unchanged, one write when it
    appears, goes or changes in place, two (delete + put) when its index key changes."""
    keys = tuple(table_keys)
    old, new = index_entry(index, keys, before), index_entry(index, keys, after)
    if old == new:
        return 0
    if old is None or new is None:
        return write_units(item_size(old), item_size(new))
    if any(old[a] != new[a] for a in index.key_attributes):
        return write_units(item_size(old), 0) + write_units(0, item_size(new))
    return write_units(item_size(old), item_size(new))


# ------------------------------------------------------------------------ what is counted
@dataclass
class ChildExecution:
    """One Distributed Map child as the interpreter ran it."""

    state_machine: str
    map_state: str | None
    transitions: int = 0  # states entered, retries included
    duration_ms: float = 0.0


@dataclass(frozen=True)
class LambdaUsage:
    """One invocation or one INIT of a Lambda function, as measured locally. What Lambda would bill
    for it is modelled from these by filebatch_local.pricing."""

    logical_id: str
    memory_mb: int
    init: bool  # an environment's INIT phase, not an invocation
    wall_ms: float  # local wall time: an upper bound on 2 oversubscribed cores
    cpu_ms: float | None  # CPU time of the environment's process; None when it died or timed out
    sdk_calls: dict[str, int] = field(default_factory=dict)  # AWS SDK calls by service


@dataclass
class Meter:
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (service, operation)
    # Billing units beyond a request count: (service, unit) -> quantity.
    units: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    lambda_invocations: Counter[str] = field(default_factory=Counter)  # logical id
    lambda_memory_mb: dict[str, int] = field(default_factory=dict)
    lambda_usage: list[LambdaUsage] = field(default_factory=list)  # invocations and INITs
    log_bytes: Counter[str] = field(default_factory=Counter)  # log group owner (logical id)
    api_requests: int = 0
    # States entered outside any Distributed Map child, by state machine name.
    parent_transitions: Counter[str] = field(default_factory=Counter)
    children: list[ChildExecution] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, service: str, operation: str, amount: int = 1) -> None:
        with self.lock:
            self.requests[(service, operation)] += amount

    def add(self, service: str, unit: str, amount: float) -> None:
        with self.lock:
            self.units[(service, unit)] += amount

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": {f"{s}:{o}": n for (s, o), n in sorted(self.requests.items())},
                "units": {f"{s}:{u}": n for (s, u), n in sorted(self.units.items())},
                "lambda": {
                    lid: {
                        "invocations": self.lambda_invocations[lid],
                        "memory_mb": self.lambda_memory_mb[lid],
                    }
                    for lid in sorted(self.lambda_invocations)
                },
                "lambda_usage": [vars(u) for u in self.lambda_usage],
                "log_bytes": dict(sorted(self.log_bytes.items())),
                "api_requests": self.api_requests,
                "parent_transitions": dict(self.parent_transitions),
                "children": len(self.children),
            }


_active: Meter | None = None
_install_lock = threading.Lock()
_installed = False
# One lock over each metered DynamoDB request: its before/after item reads see no other write.
_dynamodb_lock = threading.Lock()


def active() -> Meter | None:
    return _active


@contextlib.contextmanager
def metering(meter: Meter) -> Iterator[Meter]:
    """Count everything the local stack does while the block runs (one meter at a time)."""
    global _active
    _install()
    if _active is not None:
        raise RuntimeError("a meter is already active")
    _active = meter
    try:
        yield meter
    finally:
        _active = None


# ------------------------------------------------------------------------ hooks (local runtime)
def _usage(logical_id: str, memory_mb: int, init: bool, wall_ms: float, reported: Any) -> LambdaUsage:
    reported = reported or {}
    cpu_ms = reported.get("cpu_ms")
    return LambdaUsage(
        logical_id,
        memory_mb,
        init,
        wall_ms,
        None if cpu_ms is None else float(cpu_ms),
        {str(k): int(v) for k, v in (reported.get("sdk_calls") or {}).items()},
    )


def record_invocation(logical_id: str, memory_mb: int, handler_ms: float, reported: Any = None) -> None:
    """One Lambda invocation that ran: the handler's wall time as the caller saw it, and what its
    environment reported it used (None when the environment died or timed out)."""
    meter = _active
    if meter is None:
        return
    usage = _usage(logical_id, memory_mb, False, handler_ms, reported)
    with meter.lock:
        meter.lambda_invocations[logical_id] += 1
        meter.lambda_memory_mb[logical_id] = memory_mb
        meter.lambda_usage.append(usage)


def record_init(logical_id: str, memory_mb: int, reported: Any) -> None:
    """One execution environment's INIT (the interpreter and the handler's imports) as it reported
    it, recorded when the environment serves its first invocation. Lambda bills INIT of on-demand
    environments since 1 August 2025."""
    meter = _active
    if meter is None:
        return
    usage = _usage(logical_id, memory_mb, True, float((reported or {}).get("wall_ms") or 0.0), reported)
    with meter.lock:
        meter.lambda_memory_mb[logical_id] = memory_mb
        meter.lambda_usage.append(usage)


def record_log_line(logical_id: str, line: str) -> None:
    meter = _active
    if meter is None:
        return
    with meter.lock:
        meter.log_bytes[logical_id] += len(line.encode()) + LOG_EVENT_OVERHEAD_BYTES


def record_api_request() -> None:
    meter = _active
    if meter is None:
        return
    with meter.lock:
        meter.api_requests += 1


# ------------------------------------------------------------------------ patches (moto)
def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        _wrap_moto_server()
        _count_event_deliveries()
        _count_state_transitions()
        _installed = True


def _wrap_moto_server() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__

    def __call__(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        meter = _active
        if meter is None:
            return original(self, environ, start_response)
        return _metered_call(meter, lambda env, sr: original(self, env, sr), environ, start_response)

    DomainDispatcherApplication.__call__ = __call__  # type: ignore[method-assign]


def _service_and_region(environ: dict[str, Any]) -> tuple[str, str] | None:
    found = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found:
        return found.group(2), found.group(1)
    credential = parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential")
    if credential:
        scoped = _QUERY_SCOPE.match(unquote(credential[0]))
        if scoped:
            return scoped.group(2), scoped.group(1)
    return None  # moto's own API (reset, config): not a billed service


def _metered_call(
    meter: Meter, app: Callable[[dict[str, Any], Any], Any], environ: dict[str, Any], start_response: Any
) -> Any:
    scope = _service_and_region(environ)
    if scope is None:
        return app(environ, start_response)
    service, region = scope
    method = environ.get("REQUEST_METHOD", "GET")
    if service == "s3":
        operation = _s3_operation(method, environ)
        meter.count("s3", operation)
        # By the key's first segment (uploads/, manifests/, workflow-results/...): per file or per batch.
        segments = environ.get("PATH_INFO", "/").strip("/").split("/")
        where = (
            f"{segments[1]}/" if len(segments) > 2 else (segments[1] if len(segments) == 2 else "(bucket)")
        )
        meter.add("s3 detail", f"{operation} {where}", 1)
        return app(environ, start_response)
    body = b""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    operation = target.rsplit(".", 1)[-1] if target else _query_action(environ, body)
    if service == "lambda" and _LAMBDA_INVOKE.match(environ.get("PATH_INFO", "")):
        operation = "Invoke"
    request = _json(body)
    status: list[str] = []

    def capture(status_line: str, headers: Any, exc_info: Any = None) -> Any:
        status.append(status_line)
        return (
            start_response(status_line, headers, exc_info)
            if exc_info
            else start_response(status_line, headers)
        )

    if service == "dynamodb":
        with _dynamodb_lock:
            before = _dynamodb_items(region, operation, request)
            chunks = list(app(environ, capture))
            after = _dynamodb_items(region, operation, request)
        meter.count(service, operation)
        _meter_dynamodb(meter, region, operation, request, _json(b"".join(chunks)), before, after)
        return chunks
    chunks = list(app(environ, capture))
    response_bytes = b"".join(chunks)
    if service == "sqs":
        _meter_sqs(meter, operation, body, response_bytes)
    elif service == "events" and operation == "PutEvents":
        meter.count(service, operation)
        for entry in request.get("Entries") or []:
            meter.add("events", "custom events (64 KB chunks)", _chunks(len(json.dumps(entry))))
    else:
        meter.count(service, operation)
    return chunks


def _json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _query_action(environ: dict[str, Any], body: bytes) -> str:
    fields = parse_qs(environ.get("QUERY_STRING", "")) | parse_qs(body.decode("utf-8", "replace"))
    return fields.get("Action", [f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"])[0]


def _chunks(size: int) -> int:
    return max(1, math.ceil(size / CHUNK_BYTES))


def _s3_operation(method: str, environ: dict[str, Any]) -> str:
    """The S3 REST operation of a path-style request (the local endpoint is an IP address)."""
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    has_key = "/" in path.strip("/")
    if method == "PUT":
        if not has_key:
            return "PutBucket*"
        if "partNumber" in query:
            return "UploadPart"
        return "CopyObject" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PutObject"
    if method == "POST":
        if "delete" in query:
            return "DeleteObjects"
        if "uploads" in query:
            return "CreateMultipartUpload"
        return "CompleteMultipartUpload" if "uploadId" in query else "PostObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if not has_key:
        return (
            "ListObjects" if not any(k in query for k in ("cors", "policy", "notification")) else "GetBucket*"
        )
    return "ListParts" if "uploadId" in query else "GetObject"


def _meter_sqs(meter: Meter, operation: str, body: bytes, response: bytes) -> None:
    if operation == "ReceiveMessage":
        received = _json(response).get("Messages") or []
        if not received:
            # Pollers' empty receives depend on wall-clock time (Lambda's long-poll for 20 s, the
            # local poller for 1 s), not on the files: a per-stack cost, kept apart.
            meter.count("sqs", "ReceiveMessage (empty)")
            return
        meter.count("sqs", operation)
        meter.add("sqs", "requests (64 KB chunks)", _chunks(len(response)))
        return
    meter.count("sqs", operation)
    meter.add("sqs", "requests (64 KB chunks)", _chunks(len(body)))


# ------------------------------------------------------------------------ DynamoDB metering
def _table_info(region: str, table_name: str) -> tuple[tuple[str, ...], list[SecondaryIndex]]:
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends[ACCOUNT_ID][region].get_table(table_name)
    keys = tuple(a for a in (table.hash_key_attr, table.range_key_attr) if a)
    indexes = []
    for index in table.global_indexes:
        projection = index.projection or {}
        kind = projection.get("ProjectionType", "ALL")
        projected = None if kind == "ALL" else tuple(projection.get("NonKeyAttributes") or ())
        indexes.append(SecondaryIndex(index.name, tuple(index.schema_key_attrs), projected))
    return keys, indexes


def _current_item(region: str, table_name: str, key: dict[str, Any]) -> dict[str, Any] | None:
    from moto.dynamodb.models import dynamodb_backends

    try:
        found = dynamodb_backends[ACCOUNT_ID][region].get_item(table_name, key)
    except Exception:  # no such table: the request fails, and costs nothing
        return None
    return found.to_json()["Attributes"] if found is not None else None


def _writes(operation: str, request: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, table, key-or-item) of every item a write request names."""
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        named = request.get("Item") if operation == "PutItem" else request.get("Key")
        return [(operation, request.get("TableName", ""), named or {})]
    if operation == "BatchWriteItem":
        return [
            ("PutItem", table, entry["PutRequest"]["Item"])
            if "PutRequest" in entry
            else ("DeleteItem", table, entry["DeleteRequest"]["Key"])
            for table, entries in (request.get("RequestItems") or {}).items()
            for entry in entries
        ]
    if operation == "TransactWriteItems":
        result = []
        for entry in request.get("TransactItems") or []:
            kind, op = next(iter(entry.items()))
            result.append((kind, op.get("TableName", ""), op.get("Item") or op.get("Key") or {}))
        return result
    return []


def _key_of(region: str, table_name: str, named: dict[str, Any]) -> dict[str, Any]:
    keys, _ = _table_info(region, table_name)
    return {k: named[k] for k in keys if k in named}


def _dynamodb_items(region: str, operation: str, request: dict[str, Any]) -> list[dict[str, Any] | None]:
    items: list[dict[str, Any] | None] = []
    for _, table, named in _writes(operation, request):
        try:
            key = _key_of(region, table, named)
        except Exception:
            items.append(None)
            continue
        items.append(_current_item(region, table, key))
    return items


def _meter_dynamodb(
    meter: Meter,
    region: str,
    operation: str,
    request: dict[str, Any],
    response: dict[str, Any],
    before: list[dict[str, Any] | None],
    after: list[dict[str, Any] | None],
) -> None:
    transactional = operation == "TransactWriteItems"
    for (kind, table, _), old, new in zip(_writes(operation, request), before, after, strict=True):
        try:
            keys, indexes = _table_info(region, table)
        except Exception:  # no such table: the request failed, and costs nothing
            log.debug("no table %s", table)
            continue
        size_old, size_new = item_size(old), item_size(new)
        if kind == "ConditionCheck":
            size_new = size_old
        units = write_units(size_old, size_new, transactional=transactional)
        meter.add("dynamodb", "WRU", units)
        # Where they go, for the report (not billed twice: the pricing reads "WRU" only).
        meter.add("dynamodb detail", f"WRU {operation} {table}", units)
        meter.add("dynamodb detail", f"items written by {operation}", 1)
        meter.add("dynamodb detail", f"item bytes written by {operation}", max(size_old, size_new))
        if kind != "ConditionCheck":
            for index in indexes:
                index_units = index_write_units(index, keys, old, new)
                meter.add("dynamodb", "WRU (indexes)", index_units)
                meter.add("dynamodb detail", f"WRU index {index.name}", index_units)
    consistency = "strong" if request.get("ConsistentRead") else "eventual"
    if operation == "GetItem":
        meter.add("dynamodb", "RRU", read_units(item_size(response.get("Item")), consistency=consistency))
    elif operation in ("Query", "Scan"):
        items = response.get("Items") or []
        size = sum(item_size(i) for i in items)
        # Items a filter dropped were read too: count them at the returned items' mean size.
        scanned, returned = response.get("ScannedCount", len(items)), len(items)
        if scanned > returned:
            size = size * scanned // returned if returned else scanned * 100
        meter.add("dynamodb", "RRU", read_units(size, consistency=consistency))
    elif operation == "BatchGetItem":
        for table, asked in (request.get("RequestItems") or {}).items():
            mode = "strong" if asked.get("ConsistentRead") else "eventual"
            found = (response.get("Responses") or {}).get(table) or []
            for item in found:
                meter.add("dynamodb", "RRU", read_units(item_size(item), consistency=mode))
            missing = len(asked.get("Keys") or []) - len(found)
            if missing > 0:
                meter.add("dynamodb", "RRU", missing * read_units(0, consistency=mode))
    elif operation == "TransactGetItems":
        for entry in response.get("Responses") or []:
            meter.add(
                "dynamodb", "RRU", read_units(item_size(entry.get("Item")), consistency="transactional")
            )


# ------------------------------------------------------------------------ EventBridge (in moto)
def _count_event_deliveries() -> None:
    from moto.events.models import Rule
    from moto.s3 import notifications

    send_to_bus = notifications._send_event_bridge_message

    def _send_event_bridge_message(*args: Any, **kwargs: Any) -> None:
        meter = _active
        if meter is not None:
            meter.add("events", "S3 events to EventBridge", 1)
            event_name = args[2] if len(args) > 2 else kwargs.get("event_name")
            meter.add("events detail", f"S3 {event_name}", 1)
        send_to_bus(*args, **kwargs)

    notifications._send_event_bridge_message = _send_event_bridge_message

    send_to_targets = Rule.send_to_targets

    def send(self: Any, original_event: Any, transform_input: bool = True) -> None:
        meter = _active
        if meter is not None and self.event_pattern.matches_event(original_event):
            for target in self.targets:
                if ":sqs:" in target["Arn"]:
                    # The rule's delivery is an SQS SendMessage, billed by SQS.
                    meter.count("sqs", "SendMessage (EventBridge target)")
                    meter.add("sqs", "requests (64 KB chunks)", _chunks(len(json.dumps(original_event))))
        send_to_targets(self, original_event, transform_input)

    Rule.send_to_targets = send  # type: ignore[method-assign]


# ------------------------------------------------------------------------ Step Functions (in moto)
_CHILD = "_filebatch_child_execution"


def _count_state_transitions() -> None:
    from moto.stepfunctions.parser.asl.component.common.retry.retry_outcome import RetryOutcome
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker_module,
    )
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
    from moto.stepfunctions.parser.asl.eval.environment import Environment

    # Frames opened inside a child (an inline Map's iterations, a Parallel's branches) belong to it.
    inner_frame = Environment.as_inner_frame_of.__func__  # type: ignore[attr-defined]

    def as_inner_frame_of(cls: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        frame = inner_frame(cls, env, *args, **kwargs)
        child = getattr(env, _CHILD, None)
        if child is not None:
            setattr(frame, _CHILD, child)
        return frame

    Environment.as_inner_frame_of = classmethod(as_inner_frame_of)  # type: ignore[method-assign,assignment]

    def transition(env: Any) -> None:
        meter = _active
        if meter is None:
            return
        child = getattr(env, _CHILD, None)
        with meter.lock:
            if child is not None:
                child.transitions += 1
            else:
                meter.parent_transitions[_state_machine_name(env)] += 1

    eval_body = CommonStateField._eval_body

    def _eval_body(self: Any, env: Any) -> None:
        transition(env)
        eval_body(self, env)

    CommonStateField._eval_body = _eval_body  # type: ignore[method-assign]

    handle_retry = ExecutionState._handle_retry

    def _handle_retry(self: Any, env: Any, failure_event: Any) -> Any:
        outcome = handle_retry(self, env, failure_event)
        if outcome == RetryOutcome.CanRetry:
            transition(env)  # each retry is billed as one more transition
        return outcome

    ExecutionState._handle_retry = _handle_retry  # type: ignore[method-assign]

    worker_class = worker_module.DistributedItemProcessorWorker
    eval_job = worker_class._eval_job

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        meter = _active
        if meter is None:
            eval_job(self, env, job)
            return
        state = self._env.states.context_object.context_object_data.get("State") or {}
        child = ChildExecution(_state_machine_name(env), state.get("Name"))
        setattr(env, _CHILD, child)
        started = time.monotonic()
        try:
            eval_job(self, env, job)
        finally:
            child.duration_ms = (time.monotonic() - started) * 1000
            with meter.lock:
                meter.children.append(child)

    worker_class._eval_job = _eval_job  # type: ignore[method-assign]


def _state_machine_name(env: Any) -> str:
    machine = env.states.context_object.context_object_data.get("StateMachine") or {}
    return str(machine.get("Name", ""))
