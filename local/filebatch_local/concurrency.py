"""How much runs at once, read from the template's own concurrency settings: the state machines'
Map MaxConcurrency, the SQS event sources' MaximumConcurrency and the functions'
ReservedConcurrentExecutions.

The local stack sizes two things from it: the Step Functions interpreter's HTTP connection pool
(one connection per task that can be in flight) and how many execution environments each
function starts ahead of its first invocations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# A Map without MaxConcurrency (or with 0, or a MaxConcurrencyPath) has no limit of its own;
# counted as this many iterations at once, a bound for sizing only, never enforced.
UNBOUNDED_MAP_CONCURRENCY = 40
# Lambda starts 5 concurrent batches per SQS mapping when no ScalingConfig.MaximumConcurrency is set.
DEFAULT_SQS_CONCURRENCY = 5


def _map_limit(state: Mapping[str, Any]) -> int:
    limit = state.get("MaxConcurrency")
    return int(limit) if isinstance(limit, int | float) and limit > 0 else UNBOUNDED_MAP_CONCURRENCY


def _processor_states(state: Mapping[str, Any]) -> Mapping[str, Any]:
    processor = state.get("ItemProcessor") or state.get("Iterator") or {}
    return processor.get("States") or {}


def concurrent_tasks(states: Mapping[str, Any]) -> int:
    """The most Task states of one execution of `states` that can be in flight at once: a Map runs
    MaxConcurrency iterations of its processor at a time, a Parallel all its branches."""
    most = 1
    for state in states.values():
        kind = state.get("Type")
        if kind == "Map":
            most = max(most, _map_limit(state) * concurrent_tasks(_processor_states(state)))
        elif kind == "Parallel":
            branches = state.get("Branches") or []
            most = max(most, sum(concurrent_tasks(branch.get("States") or {}) for branch in branches))
    return most


def _task_function(state: Mapping[str, Any]) -> str | None:
    """The function a Task state invokes (name or ARN), or None for other integrations."""
    resource = str(state.get("Resource", ""))
    if resource.startswith("arn:aws:lambda:"):
        return resource
    if resource.startswith("arn:aws:states:::lambda:invoke"):
        name = (state.get("Parameters") or {}).get("FunctionName")
        return name if isinstance(name, str) else None
    return None


def _functions_in(states: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for state in states.values():
        function = _task_function(state)
        if function is not None and function not in found:
            found.append(function)
    return found


def map_functions_in_flight(states: Mapping[str, Any], outer: int = 1) -> dict[str, int]:
    """For each function a Map's iterations invoke: its share of the Map's concurrency. The
    iterations in flight are spread over the processor's functions (each iteration is in one task
    at a time), so each gets ceil(concurrency / functions); nested Maps multiply."""
    shares: dict[str, int] = {}
    for state in states.values():
        if state.get("Type") != "Map":
            continue
        inner_states = _processor_states(state)
        in_flight = outer * _map_limit(state)
        functions = _functions_in(inner_states)
        for function in functions:
            shares[function] = max(shares.get(function, 0), math.ceil(in_flight / len(functions)))
        for function, share in map_functions_in_flight(inner_states, in_flight).items():
            shares[function] = max(shares.get(function, 0), share)
    return shares


def interpreter_connections(definitions: Iterable[str]) -> int:
    """Connections the interpreter's clients need so that no task waits for one: one per task in
    flight, for one execution of each state machine."""
    return sum(concurrent_tasks(json.loads(definition).get("States") or {}) for definition in definitions)


def environments_ahead(
    definitions: Iterable[str],
    logical_id_of: Callable[[str], str | None],
    sqs_concurrency: Mapping[str, int | None],
    reserved: Mapping[str, int | None],
    cap: int,
) -> dict[str, int]:
    """How many environments to start ahead, per function logical id (every one in `reserved`):
    its share of a Map's concurrency (state machines name functions by ARN, `logical_id_of`
    resolves them) or its SQS event source's MaximumConcurrency, within its
    ReservedConcurrentExecutions and `cap`; 1 for any other function."""
    wanted: dict[str, int] = dict.fromkeys(reserved, 1)
    for definition in definitions:
        for function, share in map_functions_in_flight(json.loads(definition).get("States") or {}).items():
            logical_id = logical_id_of(function)
            if logical_id in wanted:
                wanted[logical_id] = max(wanted[logical_id], share)
    for logical_id, concurrency in sqs_concurrency.items():
        if logical_id in wanted:
            wanted[logical_id] = max(wanted[logical_id], concurrency or DEFAULT_SQS_CONCURRENCY)
    return {
        logical_id: max(1, min(count, cap, reserved[logical_id] or count))
        for logical_id, count in wanted.items()
    }
