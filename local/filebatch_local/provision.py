"""An in-process moto server, the fixes it needs for a concurrent stack, and the template's
resources created in it from their own properties.

Deploying the (SAM-translated) template into moto's CloudFormation does not work (see
/work/shared/notes/local-aws-emulation.md), so each supported resource type is created here with
the API call CloudFormation would make.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import logging
import os
import secrets
import string
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import boto3
import requests
from botocore.config import Config

from filebatch_local.template import LOCAL_ROLE_ARN, Template, walk_states

log = logging.getLogger("filebatch_local")

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}

# Resource types the local stack does not create, and why that is fine locally.
IGNORED_TYPES = {
    "AWS::S3::BucketPolicy": "moto does not enforce bucket policies (and local S3 is plain HTTP)",
    "AWS::SQS::QueuePolicy": "moto does not enforce queue policies",
    "AWS::Logs::LogGroup": "function logs go to .local/logs/<LogicalId>.log",
    "AWS::CloudWatch::Alarm": "no metrics locally",
    "AWS::SNS::Topic": "only alarms publish to it, and there are no alarms locally",
    "AWS::SNS::Subscription": "the alarm topic is not created locally",
    "AWS::KMS::Key": "it only encrypts the alarm topic, which is not created locally",
    "AWS::Serverless::LayerVersion": "layers are put on the workers' sys.path",
    "AWS::Serverless::Api": "served by filebatch_local.api",
    "AWS::IAM::Role": "moto does not enforce IAM; one local role is used",
}


_sessions: dict[str, boto3.session.Session] = {}
_sessions_lock = threading.Lock()


def client(service: str, endpoint: str, region: str) -> Any:
    """A client for the local endpoint with dummy credentials.

    One session per region, shared: its loader parses each service model once (a new session
    per client costs ~0.1 s of JSON parsing each time). A session of our own, so no credentials or
    endpoint from the caller's environment leak in. Creating clients on one session is not
    thread-safe, hence the lock.
    """
    with _sessions_lock:
        if region not in _sessions:
            _sessions[region] = boto3.session.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # noqa: S106 - dummy credentials for moto
                region_name=region,
            )
        return _sessions[region].client(  # type: ignore[call-overload]
            service, endpoint_url=endpoint, config=Config(retries={"max_attempts": 2, "mode": "standard"})
        )


# ------------------------------------------------------------------------------------ moto fixes
_patches_installed = False
_patches_lock = threading.Lock()


def install_moto_patches() -> None:
    """Process-wide fixes measured in the notes; idempotent."""
    global _patches_installed
    with _patches_lock:
        if _patches_installed:
            return
        _item_level_transaction_rollback()
        _cache_moto_module_list()
        _serialise_dynamodb()
        _cache_step_functions_clients()
        _cache_jsonpath_parsing()
        _sqs_scans_in_linear_time()
        _result_writer_reads_the_state_input()
        _item_batcher_and_express_children()
        _s3_events_in_eventbridges_shape()
        _s3_lists_part_checksums()
        _patches_installed = True


def _cache_moto_module_list() -> None:
    # moto's server lists its own package directory (an isdir per entry) on every request to find
    # the backend; the directory does not change while the stack runs.
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def _item_level_transaction_rollback() -> None:
    # moto's TransactWriteItems deep-copies every table it touches (once per item!) so it can roll
    # back: O(table size) per call, ~280 ms per upload event at 1,000 files. Back up only the items
    # the transaction names instead, and restore those on failure. Runs under the DynamoDB lock
    # installed next, so no other request sees the intermediate state.
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    Table.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table_name = op.get("TableName")
            if not table_name or table_name not in self.tables:
                continue
            table = self.tables[table_name]
            if op_type == "Put":
                attrs = [a for a in (table.hash_key_attr, table.range_key_attr) if a]
                key = {a: op["Item"][a] for a in attrs if a in op["Item"]}
            else:
                key = op.get("Key", {})
            current = self.get_item(table_name, key)
            backups.append((table_name, key, current.to_json()["Attributes"] if current else None))
        try:
            original(self, transact_items)
        except Exception:
            for table_name, key, attributes in reversed(backups):
                if attributes is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attributes)
            raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _serialise_dynamodb() -> None:
    # Concurrent ADD updates to one item are lost in moto otherwise (917/1000 measured). One
    # re-entrant lock over every public backend method makes each request atomic, as DynamoDB is.
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return wrapper

    for name, member in list(vars(DynamoDBBackend).items()):
        if (
            not name.startswith("_")
            and callable(member)
            and not isinstance(member, staticmethod | classmethod)
        ):
            setattr(DynamoDBBackend, name, locked(member))


# Connections per client of the interpreter: botocore's default until a stack sizes them.
_interpreter_connections = 10


def size_interpreter_connection_pool(connections: int) -> None:
    """Give the interpreter's clients created from now on `connections` pooled connections (at
    least botocore's 10): one per task that can be in flight, so no Map iteration waits for a
    connection or opens (and then throws away) one of its own."""
    global _interpreter_connections
    _interpreter_connections = max(10, connections)


def _cache_step_functions_clients() -> None:
    # The interpreter builds a new boto3 client for every task (~3x slower Maps). Clients are
    # thread-safe once built; building them on the shared default session is not, hence the lock.
    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.utils import boto_client as boto_client_module

    original = boto_client_module.boto_client_for
    cache: dict[tuple[str, str, str, bool, int], Any] = {}
    lock = threading.Lock()

    # moto's function builds its Config itself; the name is looked up in its module when it runs.
    def config_with_pool(**settings: Any) -> Config:
        return Config(max_pool_connections=_interpreter_connections, **settings)

    boto_client_module.Config = config_with_pool  # type: ignore[attr-defined,assignment]

    @functools.wraps(original)
    def cached(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, moto_server_port(), bool(botocore_stubber.enabled), _interpreter_connections)
        with lock:
            if key not in cache:
                cache[key] = original(region=region, service=service, state_credentials=state_credentials)
            return cache[key]

    boto_client_module.boto_client_for = cached
    # Modules that already did `from ... import boto_client_for` hold the original: patch each.
    # Modules imported later pick up the cached function from boto_client_module.
    for module in list(sys.modules.values()):
        if getattr(module, "boto_client_for", None) is original:
            module.boto_client_for = cached  # type: ignore[attr-defined]


# Distinct JSONPaths in the definitions are few; the bound only guards against paths built at run time.
JSONPATH_CACHE_SIZE = 4096


def _cache_jsonpath_parsing() -> None:
    # The interpreter parses every JSONPath again on each evaluation (InputPath, Parameters' ".$"
    # keys, ResultPath, intrinsic arguments...): jsonpath_ng builds a new PLY parser each time,
    # ~11 ms of CPU per file in bench/e2e.py. A parsed path is an immutable tree (find and
    # update_or_create never change it), so one parse per distinct path serves every thread.
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    for module in (json_path, result_path):
        module.parse = _parsed_once(module.parse)  # type: ignore[attr-defined]


def _parsed_once(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` memoised per path; a miss parses under a lock, so concurrent Map iterations
    evaluating a new path parse it once, not once each (functools.lru_cache would race)."""
    parsed: dict[str, Any] = {}
    lock = threading.Lock()

    @functools.wraps(parse)
    def cached(path: str) -> Any:
        found = parsed.get(path)
        if found is not None:
            return found
        with lock:
            found = parsed.get(path)
            if found is None:
                found = parse(path)
                if len(parsed) < JSONPATH_CACHE_SIZE:
                    parsed[path] = found
            return found

    cached.cache_clear = parsed.clear  # type: ignore[attr-defined]
    return cached


def _sqs_scans_in_linear_time() -> None:
    # ReceiveMessage checks each message's retention by asking for the queue's attributes, and moto
    # computes all of them for that, three counts over every message included: O(messages²) per
    # receive, the upload queue's consumer falling behind as a batch's events pile up (~16 % of
    # the stack process's samples at 200 files). Read the one attribute instead. And moto's clock
    # (utcnow minus utcfromtimestamp(0), per message and per count) becomes time.time(), the
    # clock it stands for.
    from moto.sqs import models as sqs_models

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_s = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_s + message.sent_timestamp / 1000 > time.time())

    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )
    original_unix_time = sqs_models.unix_time  # type: ignore[attr-defined]

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(original_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    sqs_models.unix_time = unix_time  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]


# The `reason` S3 gives each "Object Created" event on EventBridge (S3 user guide, "EventBridge event
# message structure"), by the notification event moto raises.
S3_CREATED_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}


def _s3_events_in_eventbridges_shape() -> None:
    # moto sends S3's EventBridge events with `reason` set to the event's category ("ObjectCreated"
    # for a PUT and a CompleteMultipartUpload alike) and the ETag under "eTag"; S3 sends the
    # operation ("PutObject", "CompleteMultipartUpload") and "etag" (tests/fixtures/events).
    # Object Created events are sent in S3's shape, the others as moto sends them; moto's rule
    # matching and targets deliver them, as before.
    from moto.events.models import events_backends
    from moto.s3 import notifications

    original = notifications._send_event_bridge_message

    def send(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        reason = S3_CREATED_REASONS.get(event_name)
        if reason is None:
            original(account_id, bucket, event_name, key)
            return
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": account_id,
            # Epoch seconds here: moto's delivery to SQS writes it as ISO text, as EventBridge does.
            "time": time.time(),
            "region": bucket.region_name,
            "resources": [bucket.arn],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket.name},
                "object": {
                    "key": key.name,
                    "size": key.size,
                    "etag": key.etag.replace('"', ""),
                    "version-id": key.version_id,
                    "sequencer": "617f08299329d189",
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": account_id,
                "source-ip-address": "127.0.0.1",
                "reason": reason,
            },
        }
        # Delivery is asynchronous on AWS: a target that cannot take the event does not fail the
        # S3 request (moto's own sender swallows the same errors).
        try:
            backend = events_backends[account_id][bucket.region_name]
            for bus in list(backend.event_buses.values()):
                for rule in list(bus.rules.values()):
                    rule.send_to_targets(event, transform_input=False)  # type: ignore[arg-type]
        except Exception:
            logging.getLogger(__name__).exception("S3 event for %s not delivered", key.name)

    notifications._send_event_bridge_message = send


# Where a part's SHA-256 is kept on moto's part object (its own checksum attributes feed moto's
# whole-object checksum on complete, which is not what this patch is about).
PART_SHA256_ATTRIBUTE = "filebatch_part_sha256"


def _s3_lists_part_checksums() -> None:
    # S3 keeps the SHA-256 a part was uploaded with (x-amz-checksum-sha256) and ListParts returns it
    # (ChecksumSHA256) for an upload created with ChecksumAlgorithm SHA256; moto 5 echoes the header
    # on UploadPart, then forgets it. A client resuming an upload completes with the held parts'
    # checksums as ListParts gives them, so moto keeps and lists them here. Like moto, this checks
    # nothing against the bytes (the process step verifies the whole file: docs/uploads.md).
    from moto.s3.responses import S3Response

    original_upload_part = S3Response.upload_part
    original_list_parts = S3Response.list_parts

    def upload_part(self: Any) -> Any:
        response = original_upload_part(self)
        checksum = self.headers.get("x-amz-checksum-sha256")
        if checksum:
            multipart = self.backend.get_bucket(self.bucket_name).multiparts[self._get_param("uploadId")]
            setattr(multipart.parts[self._get_int_param("partNumber")], PART_SHA256_ATTRIBUTE, checksum)
        return response

    def list_parts(self: Any) -> Any:
        serialize = self.serialized

        def with_checksums(result: Any) -> Any:
            multipart = self.backend.get_bucket(self.bucket_name).multiparts[self._get_param("uploadId")]
            for entry in result.result["Parts"]:
                checksum = getattr(multipart.parts[int(entry["PartNumber"])], PART_SHA256_ATTRIBUTE, None)
                if checksum:
                    entry["ChecksumSHA256"] = checksum
            return serialize(result)

        self.serialized = with_checksums
        try:
            return original_list_parts(self)
        finally:
            del self.serialized

    S3Response.upload_part = upload_part  # type: ignore[method-assign]
    S3Response.list_parts = list_parts  # type: ignore[method-assign]


def _result_writer_reads_the_state_input() -> None:
    # A Distributed Map's ResultWriter Parameters ("Prefix.$": "States.Format(..., $.batch_id)") are
    # paths into the Map state's input on AWS, as ItemReader's are. moto evaluates them against the
    # Map's results (the top of its stack when the writer runs), where no such path exists: the
    # execution fails with States.Runtime. Evaluate them against the state's input instead, and leave
    # the stack as moto's S3 writer expects it (results, then the parameters).
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer import (
        result_writer_decl,
    )

    result_writer = result_writer_decl.ResultWriter

    def _eval_body(self: Any, env: Any) -> None:
        env.stack.append(env.states.get_input())
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()
        env.stack.append(parameters)
        self.resource_eval.eval_resource(env=env)

    result_writer._eval_body = _eval_body  # type: ignore[method-assign]


# The most a batch may hold when the ItemBatcher sets no MaxInputBytesPerBatch: a child's input, which
# is what Step Functions caps (256 KiB).
_DEFAULT_MAX_BATCH_BYTES = 256 * 1024
_BATCHER_KEYS = frozenset(
    {
        "MaxItemsPerBatch",
        "MaxItemsPerBatchPath",
        "MaxInputBytesPerBatch",
        "MaxInputBytesPerBatchPath",
        "BatchInput",
    }
)


# An Express child's most (Step Functions quotas: an Express execution lasts at most 5 minutes).
EXPRESS_CHILD_LIMIT_S: float = 300


def _take_map_fields_moto_refuses(definition: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Remove what moto's grammar refuses from every Map state of a definition (in place): its
    ItemBatcher, and an EXPRESS ExecutionType (the grammar knows STANDARD only; it becomes STANDARD).
    Keyed by the Map's path of state names (a Map inside another Map's ItemProcessor is (outer, inner))."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    states = definition.get("States")
    if not isinstance(states, dict):
        return found
    for scope, name, state in walk_states(states):
        if state.get("Type") != "Map":
            continue
        taken: dict[str, Any] = {}
        if "ItemBatcher" in state:
            taken["ItemBatcher"] = state.pop("ItemBatcher")
        processor = state.get("ItemProcessor") or state.get("Iterator")
        config = processor.get("ProcessorConfig") if isinstance(processor, dict) else None
        if isinstance(config, dict) and config.get("ExecutionType") == "EXPRESS":
            config["ExecutionType"] = "STANDARD"
            taken["Express"] = True
        if taken:
            found[(*scope, name)] = taken
    return found


class _ItemBatcher:
    """An ItemBatcher as AWS documents it (Step Functions developer guide, "ItemBatcher (Map)"): each
    child gets {"Items": [...], "BatchInput": {...}}, at most MaxItemsPerBatch(Path) items and at
    most MaxInputBytesPerBatch(Path) bytes (256 KiB without one), the lower limit winning; the Map's
    ItemSelector is applied to each item before batching; BatchInput is a payload template over the
    Map state's input."""

    def __init__(self, spec: Any, parse: Callable[[str], Any]) -> None:
        from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException

        def invalid(message: str) -> ASLParserException:
            return ASLParserException(errors=[f"ItemBatcher: {message}"])

        if not isinstance(spec, dict) or not spec:
            raise invalid("must be an object with at least one field")
        if unknown := set(spec) - _BATCHER_KEYS:
            raise invalid(f"unknown fields {sorted(unknown)}")
        for static, path in (
            ("MaxItemsPerBatch", "MaxItemsPerBatchPath"),
            ("MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"),
        ):
            if static in spec and path in spec:
                raise invalid(f"{static} and {path} are mutually exclusive")
            if static in spec and not _positive_int(spec[static]):
                raise invalid(f"{static} must be a positive integer")
            if path in spec and not (isinstance(spec[path], str) and spec[path].startswith("$")):
                raise invalid(f"{path} must be a JSONPath")
        self.spec = spec
        self.batch_input = None
        if "BatchInput" in spec:
            if not isinstance(spec["BatchInput"], dict):
                raise invalid("BatchInput must be an object")
            # moto's own payload template (paths, intrinsic functions, the context object), parsed
            # as the Parameters of a one-state program.
            program, _ = parse(
                json.dumps(
                    {
                        "StartAt": "BatchInput",
                        "States": {
                            "BatchInput": {"Type": "Pass", "Parameters": spec["BatchInput"], "End": True}
                        },
                    }
                )
            )
            self.batch_input = program.states.states["BatchInput"].parameters

    def _limit(self, name: str, map_input: Any) -> int | None:
        from moto.stepfunctions.parser.asl.utils.json_path import extract_json

        if name in self.spec:
            return int(self.spec[name])
        path = self.spec.get(f"{name}Path")
        if path is None:
            return None
        value = extract_json(path, map_input)
        if not _positive_int(value):
            raise ValueError(f"ItemBatcher {name}Path {path} is {value!r}, not a positive integer")
        return int(value)

    def _payload(self, env: Any, component: Any, map_input: Any, item: tuple[int, Any] | None) -> Any:
        from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

        frame = env.open_inner_frame()
        try:
            if item is not None:
                frame.states.context_object.context_object_data["Map"] = MapData(
                    Item=ItemData(Index=item[0], Value=item[1])
                )
            frame.states.reset(input_value=map_input)
            frame.stack.append(map_input)
            component.eval(frame)
            return frame.stack.pop()
        finally:
            env.delete_frame(frame)

    def batches(self, env: Any, items: list[Any], item_selector: Any) -> list[dict[str, Any]]:
        map_input = env.states.get_input()
        if item_selector is not None:
            items = [self._payload(env, item_selector, map_input, (i, v)) for i, v in enumerate(items)]
        max_items = self._limit("MaxItemsPerBatch", map_input) or len(items) or 1
        max_bytes = self._limit("MaxInputBytesPerBatch", map_input) or _DEFAULT_MAX_BATCH_BYTES
        extra: dict[str, Any] = {}
        if self.batch_input is not None:
            extra["BatchInput"] = self._payload(env, self.batch_input, map_input, None)

        def size(batch: list[Any]) -> int:
            return len(json.dumps({"Items": batch, **extra}, separators=(",", ":")).encode())

        batches: list[dict[str, Any]] = []
        current: list[Any] = []
        current_bytes = size([])
        for item in items:
            # Each item adds its own JSON and a comma.
            item_bytes = len(json.dumps(item, separators=(",", ":")).encode()) + (1 if current else 0)
            if current and (len(current) >= max_items or current_bytes + item_bytes > max_bytes):
                batches.append({"Items": current, **extra})
                current, current_bytes = [], size([])
                item_bytes -= 1
            if current_bytes + item_bytes > max_bytes:
                raise ValueError(f"ItemBatcher: an item alone exceeds {max_bytes} bytes per batch")
            current.append(item)
            current_bytes += item_bytes
        if current:
            batches.append({"Items": current, **extra})
        return batches


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _item_batcher_and_express_children() -> None:
    # moto's ASL grammar (5.2.5) has no ItemBatcher and no EXPRESS children: create_state_machine
    # refuses either. The parser is given the definition without them; what was taken is kept on the
    # Distributed Map's iteration component it belongs to: the batcher groups the items that
    # component hands to its children, and an Express child is cut at EXPRESS_CHILD_LIMIT_S as AWS
    # cuts it (at the next state boundary: a running task finishes, nothing after it runs). moto runs
    # a Distributed Map's children inside the parent (no child executions, no child histories, for
    # either type), so history is not something the type changes here. Everything else (ItemReader,
    # the children's own states, ResultWriter) runs as moto runs it.
    #
    # Upstream: LocalStack's interpreter, which moto's is a port of, has ItemBatcher (grammar rules
    # and an item batcher component under its state_map package, covered by its MAP_ITEM_BATCHER_*
    # snapshot templates). The way to offer it to moto is to port that component and its grammar
    # rules into moto/stepfunctions/parser/asl (regenerating the ANTLR runtime, as moto's port
    # script does), with the behaviour tested here as its tests; this patch goes when moto has it.
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramTimedOut
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

    DistributedIterationComponent = distributed_iteration_component.DistributedIterationComponent
    DistributedItemProcessorWorker = distributed_item_processor_worker.DistributedItemProcessorWorker
    original_parse = AmazonStateLanguageParser.parse

    def express(component: Any) -> None:
        make_program = component._get_iteration_program

        def program_with_the_express_limit() -> Any:
            program = make_program()
            # Read at each run, so that a test can shorten it.
            program.timeout_seconds = TimeoutSeconds(timeout_seconds=EXPRESS_CHILD_LIMIT_S)  # type: ignore[arg-type]
            return program

        component._get_iteration_program = program_with_the_express_limit

    def attach(
        states: Any, taken: dict[tuple[str, ...], dict[str, Any]], scope: tuple[str, ...], attached: set[Any]
    ) -> None:
        for name, state in states.states.items():
            if not isinstance(state, StateMap):
                continue
            key = (*scope, name)
            attached.add(key)
            component = state.iteration_component
            fields = taken.get(key, {})
            if fields and not isinstance(component, DistributedIterationComponent):
                raise ASLParserException(errors=[f"{name}: ItemBatcher and EXPRESS need a DISTRIBUTED Map"])
            if "ItemBatcher" in fields:
                component.item_batcher = _ItemBatcher(fields["ItemBatcher"], original_parse)  # type: ignore[attr-defined]
            if fields.get("Express"):
                express(component)
            inner = getattr(component, "_states", None)
            if inner is not None:
                attach(inner, taken, key, attached)

    def parse(definition: str) -> Any:
        try:
            document = json.loads(definition)
        except ValueError:
            return original_parse(definition)
        taken = _take_map_fields_moto_refuses(document) if isinstance(document, dict) else {}
        if not taken:
            return original_parse(definition)
        parsed: tuple[Any, Any] = original_parse(json.dumps(document))
        attached: set[tuple[str, ...]] = set()
        attach(parsed[0].states, taken, (), attached)
        if missed := sorted(set(taken) - attached):
            # Only Maps reached through Maps are attached to (a Map in a Parallel's branch is not).
            where = ", ".join("/".join(key) for key in missed)
            raise ASLParserException(
                errors=[f"{where}: ItemBatcher or EXPRESS children not reachable through Maps"]
            )
        return parsed

    AmazonStateLanguageParser.parse = staticmethod(parse)  # type: ignore[method-assign]

    original_map_run = DistributedIterationComponent._map_run

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        batcher: _ItemBatcher | None = getattr(self, "item_batcher", None)
        if batcher is not None:
            env.stack.append(batcher.batches(env, env.stack.pop(), eval_input.item_selector))
            # Already applied to each item: the children's input is the batch itself.
            eval_input.item_selector = None
        original_map_run(self, env, eval_input)

    DistributedIterationComponent._map_run = _map_run  # type: ignore[method-assign]

    original_eval_job = DistributedItemProcessorWorker._eval_job

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        original_eval_job(self, env, job)
        # moto counts a child that ran out of time as succeeded, its input as its output: on AWS it
        # timed out and has no output.
        if isinstance(env.program_state(), ProgramTimedOut):
            record = self._map_run_record
            for counter in (record.item_counter, record.execution_counter):
                counter.succeeded.offset(-1)
                counter.results_written.offset(-1)
                counter.timed_out.count()
            job.job_output = None

    DistributedItemProcessorWorker._eval_job = _eval_job  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------ moto server
class MotoServer:
    """moto's server in this process (one shared state with the Step Functions interpreter)."""

    def __init__(self, port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO; the stack's own logs are what matter.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint = ""
        self._previous_port: str | None = None
        self._previous_config: Any = None

    def start(self) -> str:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # The interpreter's own clients call http://localhost:$MOTO_PORT.
        self._previous_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(port)
        self._session = requests.Session()
        # moto's state and config are process-wide: start from a clean state (a previous stack in
        # this process must not leak in), and remember the config to give it back at stop, so
        # tests using mock_aws later in the same process see moto's defaults.
        from moto.core.config import default_user_config

        self._api("reset")
        self._previous_config = copy.deepcopy(default_user_config)
        self._api("config", MOTO_CONFIG)
        return self.endpoint

    def _api(self, name: str, body: Any = None) -> None:
        self._session.post(f"{self.endpoint}/moto-api/{name}", json=body, timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.endpoint:
            from moto.core.config import default_user_config

            try:
                self._api("reset")
            finally:
                # In place: moto modules hold references to this dict.
                default_user_config.clear()  # type: ignore[attr-defined]
                default_user_config.update(self._previous_config)
                if self._previous_port is None:
                    os.environ.pop("MOTO_PORT", None)
                else:
                    os.environ["MOTO_PORT"] = self._previous_port
        self._server.stop()


# ------------------------------------------------------------------------------------ resources
def _dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
    return buffer.getvalue()


def _cfn_to_api(value: Any, renames: dict[str, str]) -> Any:
    """CloudFormation property names → S3 API names (they differ in a few places)."""
    if isinstance(value, dict):
        return {renames.get(k, k): _cfn_to_api(v, renames) for k, v in value.items()}
    if isinstance(value, list):
        return [_cfn_to_api(v, renames) for v in value]
    return value


class Provisioner:
    def __init__(self, template: Template, endpoint: str) -> None:
        self.template = template
        self.endpoint = endpoint
        self.region = template.region
        self.skipped: dict[str, str] = {}
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(service, self.endpoint, self.region)
        return self._clients[service]

    def provision(self) -> None:
        creators: dict[str, Callable[[str], None]] = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::S3::Bucket": self._bucket,
            "AWS::SQS::Queue": self._queue,
            "AWS::Events::EventBus": self._event_bus,
            "AWS::Events::Rule": self._rule,
            "AWS::Serverless::Function": self._function,
            "AWS::Serverless::StateMachine": self._state_machine,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::ApiGateway::UsagePlan": self._usage_plan,
        }
        self._role()
        # Queues and buses before rules (targets, and the bus a rule is on) and redrive; functions
        # before state machines (task ARNs).
        order = list(creators)
        by_type = sorted(
            self.template.resources,
            key=lambda lid: (
                order.index(self.template.type_of(lid)) if self.template.type_of(lid) in order else 99
            ),
        )
        for logical_id in by_type:
            kind = self.template.type_of(logical_id)
            if kind in creators:
                creators[kind](logical_id)
            else:
                self.skipped[logical_id] = IGNORED_TYPES.get(kind, f"{kind} is not emulated locally")
        self._queue_redrive()

    def _role(self) -> None:
        iam = self._client("iam")
        iam.create_role(
            RoleName=LOCAL_ROLE_ARN.rsplit("/", 1)[1],
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )

    def _table(self, logical_id: str) -> None:
        properties = self.template.properties(logical_id)
        request: dict[str, Any] = {
            "TableName": self.template.physical_name(logical_id),
            "KeySchema": properties["KeySchema"],
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "BillingMode": properties.get("BillingMode", "PROVISIONED"),
        }
        for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if key in properties:
                request[key] = properties[key]
        if "StreamSpecification" in properties:
            request["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
        if request["BillingMode"] == "PROVISIONED" and "ProvisionedThroughput" not in request:
            raise ValueError(f"{logical_id}: BillingMode PROVISIONED needs ProvisionedThroughput")
        dynamodb = self._client("dynamodb")
        dynamodb.create_table(**request)
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled") in (True, "true"):
            dynamodb.update_time_to_live(
                TableName=request["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )

    def _bucket(self, logical_id: str) -> None:
        properties = self.template.properties(logical_id)
        name = self.template.physical_name(logical_id)
        s3 = self._client("s3")
        s3.create_bucket(Bucket=name)  # us-east-1: no LocationConstraint
        cors = properties.get("CorsConfiguration")
        if cors:
            rules = _cfn_to_api(
                cors["CorsRules"], {"ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}
            )
            s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
        lifecycle = properties.get("LifecycleConfiguration")
        if lifecycle:
            s3.put_bucket_lifecycle_configuration(
                Bucket=name,
                LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in lifecycle["Rules"]]},
            )
        versioning = properties.get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": versioning["Status"]})
        encryption = properties.get("BucketEncryption")
        if encryption:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": _cfn_to_api(
                        encryption["ServerSideEncryptionConfiguration"],
                        {"ServerSideEncryptionByDefault": "ApplyServerSideEncryptionByDefault"},
                    )
                },
            )
        block = properties.get("PublicAccessBlockConfiguration")
        if block:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        ownership = properties.get("OwnershipControls")
        if ownership:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=ownership)
        notifications = properties.get("NotificationConfiguration") or {}
        request: dict[str, Any] = {}
        if (notifications.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled") in (True, "true"):
            request["EventBridgeConfiguration"] = {}
        for key in ("QueueConfigurations", "LambdaConfigurations", "TopicConfigurations"):
            if notifications.get(key):
                self.skipped[f"{logical_id}.{key}"] = "direct S3 notifications are not emulated"
        if request:
            s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=request)

    def _queue(self, logical_id: str) -> None:
        properties = self.template.properties(logical_id)
        attributes = {
            key: str(properties[key]).lower() if isinstance(properties[key], bool) else str(properties[key])
            for key in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "DelaySeconds",
                "MaximumMessageSize",
                "ReceiveMessageWaitTimeSeconds",
                "FifoQueue",
                "ContentBasedDeduplication",
            )
            if key in properties
        }
        self._client("sqs").create_queue(
            QueueName=self.template.physical_name(logical_id), Attributes=attributes
        )

    def _queue_redrive(self) -> None:
        # Set after every queue exists, since the dead-letter queue may come later in the template.
        sqs = self._client("sqs")
        for logical_id in self.template.logical_ids("AWS::SQS::Queue"):
            redrive = self.template.properties(logical_id).get("RedrivePolicy")
            if redrive:
                sqs.set_queue_attributes(
                    QueueUrl=self.template.ref(logical_id),
                    Attributes={
                        "RedrivePolicy": json.dumps(redrive) if isinstance(redrive, dict) else redrive
                    },
                )

    def _event_bus(self, logical_id: str) -> None:
        # moto delivers PutEvents on a custom bus to the SQS targets of that bus's rules.
        self._client("events").create_event_bus(Name=self.template.physical_name(logical_id))

    def _rule(self, logical_id: str) -> None:
        properties = self.template.properties(logical_id)
        if "EventPattern" not in properties:
            self.skipped[logical_id] = "scheduled rules are not emulated"
            return
        name = self.template.physical_name(logical_id)
        bus = properties.get("EventBusName", "default")
        events = self._client("events")
        pattern = properties["EventPattern"]
        events.put_rule(
            Name=name,
            EventBusName=bus,
            EventPattern=pattern if isinstance(pattern, str) else json.dumps(pattern),
            State=properties.get("State", "ENABLED"),
            Description=properties.get("Description", ""),
        )
        targets = [
            {
                k: (json.dumps(v) if k == "InputTransformer" and isinstance(v, str) else v)
                for k, v in target.items()
            }
            for target in properties.get("Targets") or []
        ]
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)

    def _function(self, logical_id: str) -> None:
        # A placeholder in moto's Lambda backend so ARNs resolve; invocations are dispatched to the
        # real handler by filebatch_local.lambdas.
        spec = self.template.function(logical_id)
        self._client("lambda").create_function(
            FunctionName=spec.name,
            Runtime=spec.runtime,
            Role=LOCAL_ROLE_ARN,
            Handler=f"{spec.handler_file.stem}.{spec.handler_attr}",
            Code={"ZipFile": _dummy_zip()},
            Timeout=spec.timeout_s,
            MemorySize=spec.memory_mb,
            Environment={"Variables": spec.environment},
        )
        if spec.reserved_concurrency is not None:
            # So that GetFunctionConcurrency answers as on AWS; the worker pool enforces it.
            self._client("lambda").put_function_concurrency(
                FunctionName=spec.name, ReservedConcurrentExecutions=spec.reserved_concurrency
            )

    def _secret(self, logical_id: str) -> None:
        properties = self.template.properties(logical_id)
        request: dict[str, Any] = {"Name": self.template.physical_name(logical_id)}
        if "SecretString" in properties:
            request["SecretString"] = str(properties["SecretString"])
        else:
            # GenerateSecretString, as Secrets Manager does it: random, of the asked length and alphabet.
            generate = properties.get("GenerateSecretString") or {}
            alphabet = string.ascii_letters + string.digits
            if generate.get("ExcludePunctuation") not in (True, "true"):
                alphabet += string.punctuation
            length = int(generate.get("PasswordLength", 32))
            request["SecretString"] = "".join(secrets.choice(alphabet) for _ in range(length))
        self._client("secretsmanager").create_secret(**request)

    def _usage_plan(self, logical_id: str) -> None:
        # Created in moto's API Gateway (the local gateway reads its plans and keys from there, as
        # the project's tools write them), under the id the template's Ref gives. The API itself
        # is not created in moto: apiStages name it by its local id and stage, which is all a
        # usage plan needs.
        from moto.apigateway.utils import ApigwUsagePlanIdentifier
        from moto.utilities.id_generator import moto_id_manager

        properties = self.template.properties(logical_id)
        name = self.template.physical_name(logical_id)
        request: dict[str, Any] = {"name": name}
        if "Description" in properties:
            request["description"] = str(properties["Description"])
        request["apiStages"] = [_api_stage(stage) for stage in properties.get("ApiStages") or []]
        if "Throttle" in properties:
            request["throttle"] = _throttle(properties["Throttle"])
        if "Quota" in properties:
            quota = properties["Quota"]
            request["quota"] = {
                "limit": int(quota["Limit"]),
                "period": str(quota["Period"]),
                **({"offset": int(quota["Offset"])} if "Offset" in quota else {}),
            }
        if properties.get("Tags"):
            request["tags"] = {str(t["Key"]): str(t["Value"]) for t in properties["Tags"]}
        expected = self.template.ref(logical_id)
        identifier = ApigwUsagePlanIdentifier(self.template.account_id, self.region, name)
        moto_id_manager.set_custom_id(identifier, expected)
        try:
            created = self._client("apigateway").create_usage_plan(**request)
        finally:
            moto_id_manager.unset_custom_id(identifier)
        if created["id"] != expected:
            raise RuntimeError(f"{logical_id}: moto gave usage plan id {created['id']}, not {expected}")

    def _state_machine(self, logical_id: str) -> None:
        spec = self.template.state_machine(logical_id)
        # The definition runs exactly as written (the file is the one AWS gets).
        self._client("stepfunctions").create_state_machine(
            name=spec.name, definition=spec.definition, roleArn=LOCAL_ROLE_ARN, type=spec.type
        )


def _throttle(throttle: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation ThrottleSettings → the API's."""
    api: dict[str, Any] = {}
    if "RateLimit" in throttle:
        api["rateLimit"] = float(throttle["RateLimit"])
    if "BurstLimit" in throttle:
        api["burstLimit"] = int(throttle["BurstLimit"])
    return api


def _api_stage(stage: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation ApiStage → the API's (per-method Throttle keyed by "/path/METHOD")."""
    api: dict[str, Any] = {"apiId": str(stage["ApiId"]), "stage": str(stage["Stage"])}
    if stage.get("Throttle"):
        api["throttle"] = {str(method): _throttle(t) for method, t in stage["Throttle"].items()}
    return api


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule → the S3 API's shape."""
    api: dict[str, Any] = {"Status": rule["Status"]}
    if "Id" in rule:
        api["ID"] = rule["Id"]
    api["Filter"] = {"Prefix": rule["Prefix"]} if "Prefix" in rule else {"Prefix": ""}
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if rule.get("ExpiredObjectDeleteMarker") in (True, "true"):
        api["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    noncurrent_days = rule.get("NoncurrentVersionExpirationInDays") or (
        rule.get("NoncurrentVersionExpiration") or {}
    ).get("NoncurrentDays")
    if noncurrent_days:
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(noncurrent_days)}
    return api
