"""Static checks of template.yaml and the ASL: the promises the deployment makes, read off the files.

(cfn-lint, `sam validate --lint` and the ASL lint run in `make check-template`; these tests check
what those linters do not know about: our conventions and the wiring between files.)"""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

import filebatch.errors
from filebatch.services.processing import INFRASTRUCTURE_ERROR_CODES, RETRYABLE_ERROR_NAMES
from filebatch_local.template import load_template, walk_states
from tests.conftest import PROJECT_ROOT

TEMPLATE: dict[str, Any] = load_template(PROJECT_ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
STATE_MACHINES = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::StateMachine"}


def asl(resource: dict[str, Any]) -> dict[str, Any]:
    return json.loads((PROJECT_ROOT / resource["Properties"]["DefinitionUri"]).read_text())


ALL_STATES = [
    (name, state)
    for machine in STATE_MACHINES.values()
    for _, name, state in walk_states(asl(machine)["States"])
]


def test_globals_pin_the_lambda_runtime_architecture_and_tracing() -> None:
    function_globals = TEMPLATE["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    assert function_globals["Handler"] == "app.lambda_handler"
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"} <= set(
        function_globals["Environment"]["Variables"]
    )


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_is_a_thin_app_module_with_its_own_retained_log_group(name: str) -> None:
    properties = FUNCTIONS[name]["Properties"]
    code_dir = PROJECT_ROOT / properties["CodeUri"]
    assert (code_dir / "app.py").is_file()
    assert "def lambda_handler(" in (code_dir / "app.py").read_text()
    assert "Handler" not in properties or properties["Handler"] == "app.lambda_handler"
    log_group = RESOURCES[properties["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_every_function_directory_is_declared_in_the_template() -> None:
    declared = {Path(f["Properties"]["CodeUri"]).name for f in FUNCTIONS.values()}
    on_disk = {p.name for p in (PROJECT_ROOT / "functions").iterdir() if (p / "app.py").exists()}
    assert declared == on_disk


def test_bucket_blocks_public_access_encrypts_requires_tls_and_aborts_stale_multipart_uploads() -> None:
    bucket = RESOURCES["UploadBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert any("AbortIncompleteMultipartUpload" in rule for rule in rules)
    statements = RESOURCES["UploadBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_upload_events_reach_the_consumer_through_a_queue_with_a_dead_letter_queue() -> None:
    queue = RESOURCES["UploadEventsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["UploadEventsDeadLetterQueue", "Arn"]
    }
    rule = RESOURCES["UploadCreatedRule"]["Properties"]
    assert rule["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "uploads/"}]
    consumer = FUNCTIONS["RecordUploadFunction"]["Properties"]["Events"]["UploadEvents"]
    assert consumer["Type"] == "SQS"
    assert consumer["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Lambda's guidance: visibility timeout at least six times the consumer's timeout.
    timeout = FUNCTIONS["RecordUploadFunction"]["Properties"].get(
        "Timeout", TEMPLATE["Globals"]["Function"]["Timeout"]
    )
    assert queue["VisibilityTimeout"] >= 6 * timeout


def test_background_jobs_reach_their_consumer_through_a_queue_with_a_watched_dead_letter_queue() -> None:
    queue = RESOURCES["BatchJobsQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["BatchJobsDeadLetterQueue", "Arn"]
    }
    consumer = FUNCTIONS["RunBatchJobFunction"]["Properties"]
    [event] = consumer["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["Queue"] == {
        "Fn::GetAtt": ["BatchJobsQueue", "Arn"]
    }
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert queue["VisibilityTimeout"] >= 6 * consumer["Timeout"]
    # The dead-letter queue's depth pages, as the upload events' does
    alarm = RESOURCES["BatchJobsDeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["BatchJobsDeadLetterQueue", "QueueName"]}}
    ]
    upload_alarm = RESOURCES["UploadEventsDeadLetterAlarm"]["Properties"]
    same = ("Namespace", "MetricName", "Statistic", "Threshold", "ComparisonOperator")
    assert {k: alarm[k] for k in same} == {k: upload_alarm[k] for k in same}
    # And the API functions that queue jobs are told where
    sends = [
        f
        for f, r in FUNCTIONS.items()
        if "BATCH_JOBS_QUEUE_URL" in r["Properties"].get("Environment", {}).get("Variables", {})
    ]
    assert sends == ["DeleteBatchFunction"]


def test_every_api_route_is_behind_the_authorizer() -> None:
    api = RESOURCES["Api"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "ApiKeyAuthorizer"
    for function in FUNCTIONS.values():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                assert "Auth" not in event["Properties"], "no route may opt out of the authorizer"


def test_state_machine_is_wired_by_definition_uri_and_every_placeholder_is_substituted() -> None:
    for machine in STATE_MACHINES.values():
        properties = machine["Properties"]
        text = (PROJECT_ROOT / properties["DefinitionUri"]).read_text()
        placeholders = set(re.findall(r"\$\{(\w+)\}", text))
        assert placeholders == set(properties["DefinitionSubstitutions"])


def test_every_map_bounds_its_concurrency_and_reads_items_from_s3() -> None:
    maps = [state for _, state in ALL_STATES if state["Type"] == "Map"]
    assert maps
    for state in maps:
        assert isinstance(state.get("MaxConcurrency"), int) and 0 < state["MaxConcurrency"] <= 100
        if state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED":
            assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
            assert "ResultWriter" in state, "a 10,000-item Map must not return its results inline"
        else:
            # An inline Map only inside a child: over that child's batch, never over a whole batch
            assert state["ItemsPath"] == "$.Items"


DISTRIBUTED = dict(ALL_STATES)["ProcessFiles"]
INLINE = DISTRIBUTED["ItemProcessor"]["States"]["ProcessBatchOfFiles"]
MAX_ITEMS_PER_BATCH = TEMPLATE["Parameters"]["MaxItemsPerBatch"]
# Files of one batch in flight at once: children at once, each running its files all at once.
FILES_IN_FLIGHT_PER_BATCH = DISTRIBUTED["MaxConcurrency"] * min(
    int(MAX_ITEMS_PER_BATCH["Default"]), INLINE["MaxConcurrency"]
)
EXPRESS_LIMIT_S = 300


def test_the_distributed_map_hands_batches_of_files_to_express_children() -> None:
    assert DISTRIBUTED["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "EXPRESS",
    }
    batcher = DISTRIBUTED["ItemBatcher"]
    # MaxItemsPerBatch comes from the template parameter, made a number by the state before the Map
    # (a DefinitionSubstitution is text), and the children get the batch's fields in BatchInput
    path = batcher["MaxItemsPerBatchPath"]
    setting = next(state for _, state in ALL_STATES if state.get("Next") == "ProcessFiles")
    assert path == f"{setting['ResultPath']}.max_items_per_batch"
    assert setting["Parameters"] == {"max_items_per_batch.$": "States.StringToJson('${MaxItemsPerBatch}')"}
    machine = STATE_MACHINES["ProcessBatchStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["MaxItemsPerBatch"] == {"Ref": "MaxItemsPerBatch"}
    assert set(batcher["BatchInput"]) == {
        "tenant_id.$",
        "batch_id.$",
        "instructions.$",
        "dedup_fingerprint.$",
    }
    # Each child runs its files in one inline Map whose selector rebuilds a file task from both
    assert INLINE["Type"] == "Map" and INLINE["ItemProcessor"]["ProcessorConfig"] == {"Mode": "INLINE"}
    assert {k: v for k, v in INLINE["ItemSelector"].items() if "BatchInput" in v} == {
        name: f"$.BatchInput.{name.removesuffix('.$')}" for name in batcher["BatchInput"]
    }
    assert INLINE["ItemSelector"]["file_id.$"] == "$$.Map.Item.Value.file_id"


def test_a_child_runs_all_its_files_at_once_so_it_lasts_as_long_as_its_slowest_file() -> None:
    assert INLINE["MaxConcurrency"] >= MAX_ITEMS_PER_BATCH["MaxValue"]
    assert (
        1
        <= MAX_ITEMS_PER_BATCH["MinValue"]
        <= int(MAX_ITEMS_PER_BATCH["Default"])
        <= MAX_ITEMS_PER_BATCH["MaxValue"]
    )


def max_retry_wait_s(retry: dict[str, Any]) -> float:
    """The longest total wait a retrier allows (full jitter waits at most each capped interval)."""
    return sum(
        min(
            retry.get("MaxDelaySeconds", math.inf), retry["IntervalSeconds"] * retry["BackoffRate"] ** attempt
        )
        for attempt in range(retry["MaxAttempts"])
    )


# A file's steps besides describing it (docs/scaling.md): the process step reads a file of the
# default MaxFileBytes at the measured ~25 MB/s, with margin; the record step is one write.
PROCESS_S = 10.0
RECORD_S = 2.0


def test_a_file_at_the_slowest_provider_latency_fits_an_express_childs_5_minutes() -> None:
    from filebatch.runtime import BEDROCK_CONNECT_TIMEOUT_S, BEDROCK_READ_TIMEOUT_S

    assert int(TEMPLATE["Parameters"]["MaxFileBytes"]["Default"]) / 25e6 < PROCESS_S
    describe = dict(ALL_STATES)["DescribeFile"]
    provider = next(r for r in describe["Retry"] if r["ErrorEquals"] == ["RetryableDescriptionError"])
    # Every call of the slowest provider the client allows, and the retries of a retryable failure
    calls = 1 + provider["MaxAttempts"]
    slowest_file_s = (
        PROCESS_S
        + calls * (BEDROCK_CONNECT_TIMEOUT_S + BEDROCK_READ_TIMEOUT_S)
        + max_retry_wait_s(provider)
        + RECORD_S
    )
    rounds = math.ceil(MAX_ITEMS_PER_BATCH["MaxValue"] / INLINE["MaxConcurrency"])
    assert rounds * slowest_file_s <= EXPRESS_LIMIT_S
    # And with a typical provider, the longest waits for a turn the throttle retries allow fit too
    throttled_file_s = (
        PROCESS_S
        + max_retry_wait_s(throttle_retrier(dict(ALL_STATES)["ProcessFile"]))
        + max_retry_wait_s(throttle_retrier(describe))
        + calls * DESCRIBE_SECONDS
        + max_retry_wait_s(provider)
        + RECORD_S
    )
    assert rounds * throttled_file_s <= EXPRESS_LIMIT_S


def test_a_file_waiting_for_its_duplicates_description_then_taking_over_still_fits_5_minutes() -> None:
    # Issue 10: a file whose content another file is describing waits (DuplicateInProgressError's
    # retrier); when that file fails it takes the claim over and calls the slowest provider itself
    from filebatch.runtime import BEDROCK_CONNECT_TIMEOUT_S, BEDROCK_READ_TIMEOUT_S

    describe = dict(ALL_STATES)["DescribeFile"]
    waiting = next(r for r in describe["Retry"] if r["ErrorEquals"] == ["DuplicateInProgressError"])
    provider = next(r for r in describe["Retry"] if r["ErrorEquals"] == ["RetryableDescriptionError"])
    waiter_s = (
        PROCESS_S
        + max_retry_wait_s(waiting)
        + (1 + provider["MaxAttempts"]) * (BEDROCK_CONNECT_TIMEOUT_S + BEDROCK_READ_TIMEOUT_S)
        + max_retry_wait_s(provider)
        + RECORD_S
    )
    assert waiter_s <= EXPRESS_LIMIT_S
    # And the wait outlasts a typical description of the file it waits for several times over
    assert max_retry_wait_s(waiting) >= 3 * DESCRIBE_SECONDS
    assert waiting["JitterStrategy"] == "FULL"
    assert "DuplicateInProgressError" in RETRYABLE_ERROR_NAMES


def test_the_workflow_logs_its_errors_to_a_retained_log_group_without_execution_data() -> None:
    # Express children keep no history: their failures are only in these logs (docs/operations.md)
    machine = STATE_MACHINES["ProcessBatchStateMachine"]["Properties"]
    logging = machine["Logging"]
    assert logging["Level"] == "ERROR"
    assert logging["IncludeExecutionData"] == {"Ref": "WorkflowLogIncludesExecutionData"}
    assert TEMPLATE["Parameters"]["WorkflowLogIncludesExecutionData"]["Default"] == "false"
    [destination] = logging["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    statements = [st for p in machine["Policies"] if "Statement" in p for st in p["Statement"]]
    granted = {action for st in statements for action in _actions(st)}
    assert {"logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies"} <= granted


def test_retry_and_catch_error_names_exist() -> None:
    # ErrorEquals matches the Lambda errorType, i.e. the Python exception's class name.
    ours = {name for name, obj in inspect.getmembers(filebatch.errors, inspect.isclass)}
    for _, state in ALL_STATES:
        for clause in state.get("Retry", []) + state.get("Catch", []):
            for name in clause["ErrorEquals"]:
                assert (
                    name.startswith(("States.", "Lambda."))
                    or name in ours
                    or name in INFRASTRUCTURE_ERROR_CODES
                ), name


@pytest.mark.parametrize("step", ["ProcessFile", "DescribeFile"])
def test_file_steps_retry_a_crashed_timed_out_or_out_of_memory_environment_a_few_times(step: str) -> None:
    # A runtime crash is infrastructure, not the file: retried (a small budget), then recorded retryable.
    state = dict(ALL_STATES)[step]
    retried = [r for r in state["Retry"] if set(r["ErrorEquals"]) & set(INFRASTRUCTURE_ERROR_CODES)]
    assert len(retried) == 1
    assert set(retried[0]["ErrorEquals"]) == set(INFRASTRUCTURE_ERROR_CODES)
    assert 1 <= retried[0]["MaxAttempts"] <= 3
    assert retried[0]["JitterStrategy"] == "FULL"
    assert set(INFRASTRUCTURE_ERROR_CODES) <= RETRYABLE_ERROR_NAMES


def test_describe_retries_retryable_errors_with_backoff_and_jitter_and_catches_the_rest() -> None:
    describe = dict(ALL_STATES)["DescribeFile"]
    retry = next(r for r in describe["Retry"] if r["ErrorEquals"] == ["RetryableDescriptionError"])
    assert retry["BackoffRate"] > 1
    assert retry["MaxAttempts"] >= 2
    assert retry["JitterStrategy"] == "FULL"
    assert describe["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert describe["Catch"][0]["Next"] == "RecordFailure"


def test_a_file_whose_result_cannot_be_recorded_does_not_fail_the_other_files_of_its_child() -> None:
    # Given the record steps of a child's inline Map
    states = INLINE["ItemProcessor"]["States"]
    for name in ("RecordSuccess", "RecordFailure"):
        record = states[name]
        # Then after their retries, whatever is left is caught, not raised (which would fail the whole
        # Express child and leave its unrecorded files to the finalize step)
        assert record["Retry"][0]["ErrorEquals"] == ["States.ALL"]
        (catch,) = record["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        # and ends that file's iteration with nothing recorded: FinalizeBatch fails it not_processed
        leave = states[catch["Next"]]
        assert leave["Type"] == "Pass" and leave["End"] is True
        assert "Next" not in leave


def test_bad_output_has_a_retrier_of_its_own_with_the_services_budget() -> None:
    # A model reply off its schema is asked again BAD_OUTPUT_RETRIES times, by a retrier that counts
    # only its own retries (not those for throttling or crashes), and then caught and recorded
    from filebatch.services.description import BAD_OUTPUT_RETRIES

    describe = dict(ALL_STATES)["DescribeFile"]
    [retry] = [r for r in describe["Retry"] if "ProviderBadOutputError" in r["ErrorEquals"]]
    assert retry["ErrorEquals"] == ["ProviderBadOutputError"]
    assert retry["MaxAttempts"] == BAD_OUTPUT_RETRIES
    assert describe["Catch"][0]["ErrorEquals"] == ["States.ALL"]


def test_describe_concurrency_lets_one_batch_run_unthrottled_and_zero_reserves_nothing() -> None:
    from filebatch_local.template import Template

    # The bound is across batches: a single batch (its files in flight) never meets it.
    default = int(TEMPLATE["Parameters"]["DescribeConcurrency"]["Default"])
    assert default >= FILES_IN_FLIGHT_PER_BATCH
    real = PROJECT_ROOT / "template.yaml"
    assert Template(real).function("DescribeFileFunction").reserved_concurrency == default
    assert (
        Template(real, {"DescribeConcurrency": "7"}).function("DescribeFileFunction").reserved_concurrency
        == 7
    )
    # 0 means no reservation (a reservation of 0 would throttle every describe), not "throttle all"
    assert (
        Template(real, {"DescribeConcurrency": "0"}).function("DescribeFileFunction").reserved_concurrency
        is None
    )


# The burst the describe step's throttle Retry must outlast (docs/scaling.md, "Backpressure"):
# batches at once, each with its files in flight, of 10,000 files each, against the default
# DescribeConcurrency, with describes as slow as Bedrock's (several seconds a call). An Express child
# cannot wait for hours, so the burst it outlasts is small: beyond it, files are recorded retryable.
BURST_BATCHES = 2
BURST_FILES = BURST_BATCHES * 10_000
DESCRIBE_SECONDS = 5.0


def throttle_retrier(task: dict[str, Any]) -> dict[str, Any]:
    """The task's retrier for Lambda's throttling: one of its own (the first retrier that matches an
    error is the one used), with full jitter."""
    matching = [r for r in task["Retry"] if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
    assert len(matching) == 1 and matching[0]["ErrorEquals"] == ["Lambda.TooManyRequestsException"]
    assert matching[0]["JitterStrategy"] == "FULL"
    return matching[0]


def mean_retry_wait_s(retry: dict[str, Any]) -> float:
    """The total wait a retrier allows, on average: full jitter waits half of each capped interval."""
    return sum(
        min(retry["MaxDelaySeconds"], retry["IntervalSeconds"] * retry["BackoffRate"] ** attempt) / 2
        for attempt in range(retry["MaxAttempts"])
    )


def test_the_describe_throttle_retry_outlasts_a_burst_of_2_batches() -> None:
    describe = dict(ALL_STATES)["DescribeFile"]
    retry = throttle_retrier(describe)
    budget_s = mean_retry_wait_s(retry)
    # The mean wait for a turn (Little's law): the files in flight beyond the reservation, served
    # `reserved` at a time, each describe taking DESCRIBE_SECONDS
    reserved = int(TEMPLATE["Parameters"]["DescribeConcurrency"]["Default"])
    in_flight = BURST_BATCHES * FILES_IN_FLIGHT_PER_BATCH
    mean_wait_s = (in_flight - reserved) * DESCRIBE_SECONDS / reserved
    # A file's wait is about exponential (admission is a lottery among retries, not a queue), so
    # P(wait > budget) = e^(-budget/mean wait): fewer than one of the burst's files may run out
    assert BURST_FILES * math.exp(-budget_s / mean_wait_s) < 1
    # And one that does is recorded as Lambda's throttling, retryable
    assert "Lambda.TooManyRequestsException" in RETRYABLE_ERROR_NAMES


def test_a_process_step_throttled_by_the_accounts_concurrency_waits_tens_of_seconds_not_a_few() -> None:
    # The process function has no reservation: in a burst of batches the account's unreserved pool
    # can run out, and Lambda refuses the invocation before it runs. A few seconds of retries would
    # fail files of a burst that passes in a minute; more does not fit an Express child.
    process = dict(ALL_STATES)["ProcessFile"]
    retry = throttle_retrier(process)
    assert mean_retry_wait_s(retry) >= 30


def test_functions_receive_only_settings_the_config_knows() -> None:
    from filebatch.config import _ENVIRONMENT

    known = set(_ENVIRONMENT) | {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
    variables = set(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    for function in FUNCTIONS.values():
        variables |= set(function["Properties"].get("Environment", {}).get("Variables", {}))
    assert variables <= known


def test_no_resource_gets_a_full_access_managed_policy() -> None:
    for name, resource in RESOURCES.items():
        for policy in resource.get("Properties", {}).get("Policies", []):
            assert not (isinstance(policy, str) and policy.endswith("FullAccess")), f"{name}: {policy}"


def test_state_machine_s3_access_is_scoped_to_the_manifest_and_result_prefixes() -> None:
    from filebatch.models.domain import MANIFEST_PREFIX, WORKFLOW_RESULTS_PREFIX

    machine = STATE_MACHINES["ProcessBatchStateMachine"]
    statements = [s for p in machine["Properties"]["Policies"] if "Statement" in p for s in p["Statement"]]
    s3_resources = {
        s["Resource"]["Fn::Sub"] for s in statements if any(str(a).startswith("s3:") for a in _actions(s))
    }
    assert s3_resources == {
        f"${{UploadBucket.Arn}}/{MANIFEST_PREFIX}*",
        f"${{UploadBucket.Arn}}/{WORKFLOW_RESULTS_PREFIX}*",
    }


def test_the_workflow_writes_its_results_under_the_batchs_own_prefix() -> None:
    from filebatch.models.domain import workflow_results_prefix

    # The ResultWriter's Prefix is a path into the execution input (AWS adds /<map run id>/): the
    # prefix the purge of a deleted batch deletes.
    parameters = dict(ALL_STATES)["ProcessFiles"]["ResultWriter"]["Parameters"]
    assert "Prefix" not in parameters
    match = re.fullmatch(r"States\.Format\('([^']*)', \$\.tenant_id, \$\.batch_id\)", parameters["Prefix.$"])
    assert match, parameters["Prefix.$"]
    assert match[1].format("acme", "b-1") + "/" == workflow_results_prefix("acme", "b-1")


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_batch_items_expire_with_the_bucket_objects_from_one_parameter() -> None:
    from filebatch.models.records import TTL_ATTRIBUTE, BatchRecord, FileRecord

    # The table's TTL reads the attribute the batch and file records write ...
    ttl = RESOURCES["Table"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert TTL_ATTRIBUTE in BatchRecord.model_fields and TTL_ATTRIBUTE in FileRecord.model_fields
    # ... which the create function computes from the parameter the bucket's lifecycle uses.
    retention = {"Ref": "RetentionDays"}
    rules = RESOURCES["UploadBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    [expiry] = [rule for rule in rules if rule.get("ExpirationInDays") == retention]
    # Over the whole bucket: uploads, manifests, the workflow's results and results exports alike
    assert not {"Prefix", "TagFilters", "ObjectSizeGreaterThan"} & set(expiry)
    create = FUNCTIONS["CreateBatchFunction"]["Properties"]["Environment"]["Variables"]
    assert create["RETENTION_DAYS"] == retention


ALARMS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_every_alarm_notifies_the_alarm_topic_on_alarm_and_on_recovery(name: str) -> None:
    properties = ALARMS[name]["Properties"]
    assert {"Ref": "AlarmTopic"} in properties["AlarmActions"]
    assert {"Ref": "AlarmTopic"} in properties["OKActions"]


def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use_and_mail_is_optional() -> None:
    topic = RESOURCES["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    # Not alias/aws/sns: CloudWatch may not use the AWS managed key, and alarms would not publish.
    key = RESOURCES[topic["Properties"]["KmsMasterKeyId"]["Ref"]]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    cloudwatch = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and set(_actions(cloudwatch[0])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    subscriptions = [r for r in RESOURCES.values() if r["Type"] == "AWS::SNS::Subscription"]
    assert subscriptions and all(s["Condition"] == "HasAlarmEmail" for s in subscriptions)
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""
    assert TEMPLATE["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}


def test_the_dashboard_shows_every_alarm() -> None:
    from filebatch_local.template import Template

    # Resolved as CloudFormation would (GetAtt <alarm>.Arn), then read as the dashboard's JSON.
    template = Template(PROJECT_ROOT / "template.yaml")
    body = json.loads(template.properties("Dashboard")["DashboardBody"])
    widgets = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert len(widgets) == 1
    assert sorted(widgets[0]["properties"]["alarms"]) == sorted(
        template.get_att(name, "Arn") for name in ALARMS
    )


@pytest.mark.parametrize(
    ("overrides", "unwatched"),
    [({}, {"DescribeFileFunction"}), ({"DescribeConcurrency": "0"}, set())],
)
def test_the_throttles_alarm_watches_every_function_whose_throttling_is_not_intended(
    overrides: dict[str, str], unwatched: set[str]
) -> None:
    from filebatch_local.template import Template

    # Given the template as deployed with the default reservation on the describe function, or none
    template = Template(PROJECT_ROOT / "template.yaml", overrides)
    # When the throttles alarms' metrics are resolved as CloudFormation would (FunctionThrottlesAlarm,
    # and the alarms it was split into: *FunctionThrottlesAlarm)
    watched: set[str] = set()
    for alarm in (name for name in ALARMS if name.endswith("FunctionThrottlesAlarm")):
        metrics = template.properties(alarm)["Metrics"]
        watched |= {
            m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
            for m in metrics
            if "MetricStat" in m and m["MetricStat"]["Metric"]["MetricName"] == "Throttles"
        }
        # CloudWatch's hard limit for a metric math alarm: past 10 functions, split the alarm.
        assert len([m for m in metrics if "MetricStat" in m]) <= 10, alarm
    # Then every function's throttles page, except the describe function's while its reservation
    # throttles it on purpose (DescribeBacklogAlarm watches those). API routes and their authorizer
    # need not be there: a throttled one answers 5xx, which ApiServerErrorAlarm watches.
    api_functions = {
        template.ref(name)
        for name, resource in FUNCTIONS.items()
        if any(e["Type"] == "Api" for e in (resource["Properties"].get("Events") or {}).values())
    } | {template.ref("AuthorizeRequestFunction")}
    expected = {template.ref(name) for name in set(FUNCTIONS) - unwatched} - api_functions
    assert watched - api_functions == expected


@pytest.mark.parametrize("overrides", [{}, {"DescribeConcurrency": "0"}])
def test_metric_math_alarms_return_exactly_one_expression_over_their_own_metrics(
    overrides: dict[str, str],
) -> None:
    from filebatch_local.template import Template

    # Resolved: a metric may be there only under a condition.
    template = Template(PROJECT_ROOT / "template.yaml", overrides)
    for name in ALARMS:
        metrics = template.properties(name).get("Metrics")
        if not metrics:
            continue
        returned = [m for m in metrics if m["ReturnData"]]
        assert len(returned) == 1 and "Expression" in returned[0], name
        ids = {m["Id"] for m in metrics if "MetricStat" in m}
        used = set(re.findall(r"\b[a-z][a-z0-9_]*\b", returned[0]["Expression"]))
        assert "METRICS" in returned[0]["Expression"] or ids <= used, name
