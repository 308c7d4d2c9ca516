"""Static checks of the events and webhook wiring in template.yaml: the retry schedule's arithmetic
(docs/webhooks.md), the bus, the rule and the queues, and who may call loopback receivers."""

from __future__ import annotations

from typing import Any

from filebatch.adapters.webhooks import CONNECT_TIMEOUT_S, MAX_ADDRESSES_TRIED, READ_TIMEOUT_S
from filebatch.models.events import DETAIL_TYPES, EVENT_SOURCE
from filebatch.services.webhooks import RETRY_DELAY_CAP_S, RETRY_JITTER, retry_delay_s, retry_schedule
from filebatch_local.stack import LOCAL_PARAMETER_OVERRIDES
from filebatch_local.template import Template, load_template
from tests.conftest import PROJECT_ROOT

TEMPLATE: dict[str, Any] = load_template(PROJECT_ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
QUEUE = RESOURCES["WebhookDeliveriesQueue"]["Properties"]
DEAD_LETTERS = RESOURCES["WebhookDeliveriesDeadLetterQueue"]["Properties"]
DELIVER = RESOURCES["DeliverWebhookFunction"]["Properties"]
HOUR, DAY = 3600, 24 * 3600
# SQS: a message's visibility can reach at most 12 hours past its receive (ChangeMessageVisibility).
SQS_MAX_VISIBILITY_S = 12 * HOUR


def schedule() -> tuple[list[int], int]:
    """Attempt start times (s after the first) with the deployed defaults, and when the last failed
    attempt's message reaches the dead-letter queue (the most jitter and a whole invocation added)."""
    base = int(PARAMETERS["WebhookRetryBaseSeconds"]["Default"])
    receives = int(QUEUE["RedrivePolicy"]["maxReceiveCount"])
    starts = retry_schedule(base, receives)
    worst_total = sum(retry_delay_s(n, base, jitter=1.0) + DELIVER["Timeout"] for n in range(1, receives + 1))
    return starts, worst_total


def test_failed_deliveries_are_retried_for_more_than_a_day_before_the_dead_letter_queue() -> None:
    starts, _ = schedule()
    # With the default base (60 s): 60, 120, ... 15,360 s, then the 6 h cap; 13 attempts
    assert starts[:4] == [0, 60, 180, 420]
    assert len(starts) == 13
    # The last attempt starts more than 24 h after the first (26.5 h), as docs/webhooks.md says
    assert starts[-1] >= DAY
    assert starts[-1] == 95_460
    doc = (PROJECT_ROOT / "docs" / "webhooks.md").read_text()
    assert "maxReceiveCount` 13" in doc and "95,460 s (26.5 h)" in doc


def test_no_message_expires_before_its_schedule_ends_and_dead_letters_outlive_it() -> None:
    _, worst_total = schedule()
    # Jitter at its most and every invocation at its timeout: still within the queue's retention
    assert worst_total < QUEUE["MessageRetentionPeriod"]
    assert QUEUE["MessageRetentionPeriod"] == 4 * DAY
    # A dead-lettered message keeps its original enqueue time: the DLQ must keep it longer
    assert DEAD_LETTERS["MessageRetentionPeriod"] == 14 * DAY > QUEUE["MessageRetentionPeriod"]
    assert QUEUE["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["WebhookDeliveriesDeadLetterQueue", "Arn"]
    }


def test_each_postponement_stays_within_the_visibility_sqs_allows() -> None:
    # The longest delay (cap plus jitter), set at the end of a whole invocation, still ends within
    # 12 h of the message's receive
    assert RETRY_DELAY_CAP_S * (1 + RETRY_JITTER) + DELIVER["Timeout"] <= SQS_MAX_VISIBILITY_S
    assert retry_delay_s(10**9, int(PARAMETERS["WebhookRetryBaseSeconds"]["MaxValue"]), jitter=1.0) <= (
        SQS_MAX_VISIBILITY_S - DELIVER["Timeout"]
    )


def test_the_consumer_reports_partial_failures_and_has_time_for_a_whole_batch_of_slow_receivers() -> None:
    source = DELIVER["Events"]["WebhookDeliveries"]
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": ["WebhookDeliveriesQueue", "Arn"]}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Every record of a batch may take its whole connect and read timeouts, plus resolving (~5 s)
    per_attempt = MAX_ADDRESSES_TRIED * CONNECT_TIMEOUT_S + READ_TIMEOUT_S + 5
    assert DELIVER["Timeout"] >= source["Properties"]["BatchSize"] * per_attempt
    # Lambda's guidance: visibility timeout at least six times the consumer's timeout
    assert QUEUE["VisibilityTimeout"] >= 6 * DELIVER["Timeout"]
    # The consumer may postpone exactly this queue's messages
    assert DELIVER["Environment"]["Variables"]["WEBHOOK_QUEUE_URL"] == {"Ref": "WebhookDeliveriesQueue"}


def test_batch_ends_with_a_webhook_go_from_the_stacks_bus_to_the_deliveries_queue() -> None:
    template = Template(PROJECT_ROOT / "template.yaml")
    rule = template.properties("WebhookDeliveriesRule")
    assert rule["EventBusName"] == template.get_att("BatchEventsBus", "Name")
    pattern = rule["EventPattern"]
    assert pattern["source"] == [EVENT_SOURCE]
    assert set(pattern["detail-type"]) == set(DETAIL_TYPES.values())
    # Only events whose detail has a webhook URL (null is not a string: no prefix matches it)
    assert pattern["detail"] == {"webhook_url": [{"prefix": "http"}]}
    assert rule["Targets"] == [
        {"Id": "WebhookDeliveriesQueue", "Arn": template.get_att("WebhookDeliveriesQueue", "Arn")}
    ]
    # Only that rule may send to the queue
    [statement] = template.properties("WebhookDeliveriesQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": template.get_att("WebhookDeliveriesRule", "Arn")}
    }
    # The finalize step announces on that bus, and the stack says which it is
    finalize = template.function("FinalizeBatchFunction").environment
    assert finalize["EVENT_BUS_NAME"] == template.get_att("BatchEventsBus", "Name")
    outputs = template.outputs()
    assert outputs["BatchEventsBusName"] == finalize["EVENT_BUS_NAME"]
    assert outputs["BatchEventsBusArn"] == template.get_att("BatchEventsBus", "Arn")


def test_the_dead_letter_queue_pages_when_a_delivery_gave_up() -> None:
    alarm = RESOURCES["WebhookDeliveriesDeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["WebhookDeliveriesDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "ApproximateNumberOfMessagesVisible",
        0,
        "GreaterThanThreshold",
    )


def test_only_the_local_stack_calls_loopback_receivers() -> None:
    # The template's default refuses them, a prod stack may not allow them, the local stack does
    assert PARAMETERS["WebhookAllowLoopback"]["Default"] == "false"
    [assertion] = TEMPLATE["Rules"]["ProdCallsNoLoopbackWebhooks"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "WebhookAllowLoopback"}, "false"]}
    assert LOCAL_PARAMETER_OVERRIDES == {"WebhookAllowLoopback": "true"}
    # Both functions that check webhook URLs are told, from the parameter
    for function in ("CreateBatchFunction", "DeliverWebhookFunction"):
        variables = RESOURCES[function]["Properties"]["Environment"]["Variables"]
        assert variables["WEBHOOK_ALLOW_LOOPBACK"] == {"Ref": "WebhookAllowLoopback"}, function
