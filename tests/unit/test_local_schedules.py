"""The local stack's EventBridge schedules: the template's `rate(...)` expressions, and a timer that
invokes the function with the Scheduled Event payload EventBridge sends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from filebatch_local.events import ScheduledEvents
from filebatch_local.lambdas import InvokeResult
from filebatch_local.template import ScheduleSpec, Template, TemplateError, rate_period_s
from tests.conftest import PROJECT_ROOT, load_event


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(2 hours)", 7200), ("rate(1 day)", 86400)],
)
def test_rate_expressions_are_read_as_eventbridge_reads_them(expression: str, seconds: float) -> None:
    assert rate_period_s(expression) == seconds


@pytest.mark.parametrize(
    "expression", ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "cron(0 * * * ? *)"]
)
def test_what_eventbridge_refuses_or_the_stack_does_not_emulate_is_an_error(expression: str) -> None:
    with pytest.raises(TemplateError):
        rate_period_s(expression)


def test_the_template_sweeps_every_minute() -> None:
    [schedule] = Template(PROJECT_ROOT / "template.yaml").schedules()
    assert (schedule.function_logical_id, schedule.period_s, schedule.enabled) == (
        "SweepBatchesFunction",
        60,
        True,
    )


def test_the_timer_invokes_the_function_with_the_scheduled_event_shape() -> None:
    # Given a schedule of a tenth of a second and a function that records its events
    seen: list[dict[str, Any]] = []
    twice = threading.Event()

    def invoke(logical_id: str, event: Any) -> InvokeResult:
        seen.append(event)
        if len(seen) >= 2:
            twice.set()
        return InvokeResult(payload_json='{"ok": true}', function_error=False)

    spec = ScheduleSpec("SweepBatchesFunction", "Sweep", 0.1, "SweepBatchesFunctionSweep", True)
    timer = ScheduledEvents(spec, invoke, account_id="123456789012", region="us-east-1")
    # When it runs for a while
    timer.start()
    try:
        assert twice.wait(5)
    finally:
        timer.stop()
    # Then each event has the keys and constants of a real Scheduled Event, naming the rule
    real = load_event("eventbridge_scheduled_event")
    assert set(seen[0]) == set(real)
    assert {k: seen[0][k] for k in ("detail-type", "source", "detail", "resources")} == {
        k: real[k] for k in ("detail-type", "source", "detail", "resources")
    }
    assert seen[0]["id"] != seen[1]["id"]
