"""The SDK's two drivers (`_drivers`) run the protocol's effects the same way: concurrency bounds,
errors thrown back into the operation, background work joined later, transport failures."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests

from filebatch_sdk import AsyncFilebatchClient, FilebatchClient, FilebatchConnectionError
from filebatch_sdk._drivers import AsyncDriver, SyncDriver
from filebatch_sdk._protocol import Join, Op, Spawn, blocking, gather


def _run_sync(op: Op[Any]) -> Any:
    return SyncDriver(requests.Session(), timeout=5).run(op)


def _run_async(op: Op[Any]) -> Any:
    async def run() -> Any:
        return await AsyncDriver(client=None, sleep=asyncio.sleep).run(op)  # type: ignore[arg-type]

    return asyncio.run(run())


DRIVERS: dict[str, Callable[[Op[Any]], Any]] = {"threads": _run_sync, "asyncio": _run_async}


@pytest.fixture(params=list(DRIVERS))
def run(request: pytest.FixtureRequest) -> Callable[[Op[Any]], Any]:
    return DRIVERS[request.param]


def test_gather_runs_at_most_limit_operations_at_once_and_keeps_their_order(
    run: Callable[[Op[Any]], Any],
) -> None:
    # Given six operations that each wait until three of them are running together
    together = threading.Barrier(3, timeout=10)
    lock = threading.Lock()
    running = [0, 0]  # now, most

    def work(number: int) -> Callable[[], int]:
        def blocking_work() -> int:
            with lock:
                running[0] += 1
                running[1] = max(running[1], running[0])
            together.wait()
            with lock:
                running[0] -= 1
            return number * 10

        return blocking_work

    def parent() -> Op[list[int]]:
        return (yield from gather([blocking(work(n)) for n in range(6)], 3))

    # When they are gathered three at a time
    results = run(parent())
    # Then three ran at once (the barrier let them through), never more, results in order
    assert running[1] == 3
    assert results == [0, 10, 20, 30, 40, 50]


def test_a_failing_operation_is_raised_into_its_parent_once_the_others_ended(
    run: Callable[[Op[Any]], Any],
) -> None:
    # Given three operations, the second failing
    finished: list[int] = []

    def step(number: int) -> Op[int]:
        def work() -> int:
            if number == 1:
                raise OSError("disk gone")
            finished.append(number)
            return number

        return (yield from blocking(work))

    def parent() -> Op[str]:
        try:
            yield from gather([step(n) for n in range(3)], 3)
        except OSError as error:
            return f"caught: {error}"
        return "not raised"

    # When they are gathered, Then the parent caught the failure, and the others still ran
    assert run(parent()) == "caught: disk gone"
    assert sorted(finished) == [0, 2]


def test_spawned_work_is_joined_later_with_its_result_or_its_error(
    run: Callable[[Op[Any]], Any],
) -> None:
    # Given background work that waits for the parent to go on, and work that fails
    parent_went_on = threading.Event()

    def background() -> Op[str]:
        return (yield from blocking(lambda: "done" if parent_went_on.wait(10) else "blocked"))

    def failing() -> Op[str]:
        raise ValueError("bad input")
        yield  # pragma: no cover - makes this a generator

    def parent() -> Op[tuple[str, str]]:
        first = yield Spawn(background())
        second = yield Spawn(failing())
        # The parent goes on while the spawned work runs.
        parent_went_on.set()
        result = yield Join(first)
        try:
            yield Join(second)
        except ValueError as error:
            return result, str(error)
        return result, "not raised"

    # When it runs, Then both were joined: the result and the error
    assert run(parent()) == ("done", "bad input")


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_both_clients_retry_a_refused_connection_then_raise_a_connection_error() -> None:
    # Given an API address where nothing listens
    url = _closed_port()
    sync_sleeps: list[float] = []
    async_sleeps: list[float] = []

    async def record(seconds: float) -> None:
        async_sleeps.append(seconds)

    async def close_with_async_client() -> None:
        async with AsyncFilebatchClient(url, "key", max_retries=2, sleep=record) as client:
            await client.close_batch("b-1")

    # When each client tries to close a batch there (a request that is not idempotent)
    with (
        FilebatchClient(url, "key", max_retries=2, sleep=sync_sleeps.append) as client,
        pytest.raises(FilebatchConnectionError, match="3 attempt"),
    ):
        client.close_batch("b-1")
    with pytest.raises(FilebatchConnectionError, match="3 attempt"):
        asyncio.run(close_with_async_client())
    # Then both retried it twice (the connection was never made, so it cannot have taken effect)
    assert len(sync_sleeps) == len(async_sleeps) == 2
