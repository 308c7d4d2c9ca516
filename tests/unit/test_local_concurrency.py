"""filebatch_local.concurrency: what the template lets run at once, read from its state machines'
Maps, its SQS event sources and its functions' reserved concurrency."""

from __future__ import annotations

import json
from typing import Any

from filebatch_local.concurrency import (
    UNBOUNDED_MAP_CONCURRENCY,
    concurrent_tasks,
    environments_ahead,
    interpreter_connections,
    map_functions_in_flight,
)
from filebatch_local.template import Template
from tests.conftest import PROJECT_ROOT


def invoke(function: str, end: bool = False, next_state: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": function, "Payload.$": "$"},
    }
    return state | ({"End": True} if end else {"Next": next_state})


def map_state(
    max_concurrency: int | None, states: dict[str, Any], start: str, next_state: str | None = None
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Map",
        "ItemProcessor": {"StartAt": start, "States": states},
        **({"Next": next_state} if next_state else {"End": True}),
    }
    if max_concurrency is not None:
        state["MaxConcurrency"] = max_concurrency
    return state


# A Distributed Map of 8 whose children run an inline Map of 5 over two functions, then a third.
NESTED = {
    "StartAt": "Outer",
    "States": {
        "Outer": map_state(
            8,
            {
                "Inner": map_state(
                    5, {"A": invoke("fn-a", next_state="B"), "B": invoke("fn-b", end=True)}, "A", "C"
                ),
                "C": invoke("fn-c", end=True),
            },
            "Inner",
        )
    },
}


def test_nested_maps_multiply_their_concurrency() -> None:
    # Given a Map of 8 iterations whose processor holds a Map of 5
    # When the tasks in flight are counted
    # Then up to 8 x 5 tasks run at once
    assert concurrent_tasks(NESTED["States"]) == 8 * 5


def test_a_parallel_runs_its_branches_at_once_and_a_map_without_limit_counts_as_unbounded() -> None:
    # Given a Parallel of a single task and an unlimited Map of one task
    states = {
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "T", "States": {"T": invoke("fn-a", end=True)}},
                {"StartAt": "M", "States": {"M": map_state(None, {"U": invoke("fn-b", end=True)}, "U")}},
            ],
            "End": True,
        }
    }
    # Then the count is the branches' sum, the unlimited Map counted at its sizing bound
    assert concurrent_tasks(states) == 1 + UNBOUNDED_MAP_CONCURRENCY


def test_a_maps_concurrency_is_shared_among_the_functions_its_iterations_invoke() -> None:
    # Given the nested Maps
    # When each function's share is read
    shares = map_functions_in_flight(NESTED["States"])
    # Then the outer 8 are spread over the one function of its own processor, at most 8 at once...
    assert shares["fn-c"] == 8
    # ...and the inner 8 x 5 over its two functions
    assert shares["fn-a"] == shares["fn-b"] == 20


def test_environments_ahead_honour_sqs_concurrency_reserved_concurrency_and_the_cap() -> None:
    # Given functions used by the nested Maps (fn-a reserved at 6), an SQS consumer of
    # MaximumConcurrency 3, one without a ScalingConfig, and a function used by nothing
    by_name = {"fn-a": "A", "fn-b": "B", "fn-c": "C"}
    wanted = environments_ahead(
        [json.dumps(NESTED)],
        by_name.get,
        {"Consumer": 3, "DefaultConsumer": None},
        {"A": 6, "B": None, "C": None, "Consumer": None, "DefaultConsumer": None, "Api": None},
        cap=16,
    )
    # Then each gets its share within its reservation and the cap, and 1 when nothing asks more
    assert wanted == {"A": 6, "B": 16, "C": 8, "Consumer": 3, "DefaultConsumer": 5, "Api": 1}


def test_the_real_template_sizes_the_interpreter_pool_and_the_pools_from_its_own_settings() -> None:
    # Given template.yaml
    template = Template(PROJECT_ROOT / "template.yaml")
    definitions = [machine.definition for machine in template.state_machines().values()]
    functions = template.functions()
    by_arn = {spec.arn: logical_id for logical_id, spec in functions.items()}
    # When the interpreter's connections and the environments ahead are read from it
    connections = interpreter_connections(definitions)
    wanted = environments_ahead(
        definitions,
        by_arn.get,
        {source.function_logical_id: source.maximum_concurrency for source in template.sqs_sources()},
        {logical_id: spec.reserved_concurrency for logical_id, spec in functions.items()},
        cap=1000,
    )
    # Then the pool covers every task a Map may have in flight
    largest_map = max(
        state.get("MaxConcurrency", 0)
        for definition in definitions
        for state in json.loads(definition)["States"].values()
        if state["Type"] == "Map"
    )
    assert connections >= largest_map
    # and the upload consumer gets exactly its event source's MaximumConcurrency
    upload_source = next(s for s in template.sqs_sources() if s.function_logical_id == "RecordUploadFunction")
    assert wanted["RecordUploadFunction"] == upload_source.maximum_concurrency
    # and every function gets at least one environment
    assert set(wanted) == set(functions) and min(wanted.values()) >= 1
