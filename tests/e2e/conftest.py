"""One local stack for the e2e session, started by the tests themselves from template.yaml (with a
fault-injection override so the retry paths can be observed), on free ports."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import PROJECT_ROOT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start a stack of their own (marked `own_stack`) run last. moto's state is
    process-wide and a stack resets it when it starts and stops, so the session's stack loses its
    tables, queues and usage plans to any stack started after it."""
    own_stack = [i for i in items if i.get_closest_marker("own_stack")]
    items[:] = [i for i in items if i not in own_stack] + own_stack


# The session's stack, while it runs (see `stack`).
_SESSION_STACKS: list[Any] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The session's stack stops before the first test with a stack of its own: its SQS pollers and
    schedules would otherwise go on against moto's shared state, taking messages from the other
    stack's queues of the same name (and handling them with the session stack's settings)."""
    if item.get_closest_marker("own_stack"):
        while _SESSION_STACKS:
            _SESSION_STACKS.pop().stop()


# "flaky" files throttle twice then succeed; "hopeless" files throttle on every attempt.
FAULTS = "throttle:flaky:2,throttle:hopeless:99"


@dataclass
class Stack:
    api_url: str
    api_key: str
    local: Any  # filebatch_local LocalStack

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def post_batch(self, files: list[dict[str, Any]], key: str | None = None) -> requests.Response:
        return requests.post(
            f"{self.api_url}/v1/batches", json={"files": files}, headers=self.headers(key), timeout=30
        )

    def status(self, batch_id: str, key: str | None = None) -> requests.Response:
        return requests.get(f"{self.api_url}/v1/batches/{batch_id}", headers=self.headers(key), timeout=30)

    def results(self, batch_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            response = requests.get(
                f"{self.api_url}/v1/batches/{batch_id}/results",
                params=params,
                headers=self.headers(),
                timeout=30,
            )
            assert response.status_code == 200, response.text
            page = response.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def submit(self, files: list[tuple[str, bytes, str]], *, upload: list[bytes] | None = None) -> str:
        """Create a batch for (name, bytes, declared type) and PUT each file (or `upload`'s bytes)."""
        response = self.post_batch([{"filename": n, "size": len(b), "content_type": t} for n, b, t in files])
        assert response.status_code == 201, response.text
        created = response.json()
        for file, content in zip(created["files"], upload or [b for _, b, _ in files], strict=True):
            put = requests.put(
                file["upload"]["url"], data=content, headers=file["upload"]["headers"], timeout=30
            )
            assert put.status_code == 200, put.text
        return str(created["batch_id"])

    def wait_terminal(self, batch_id: str, timeout: float = 120.0) -> dict[str, Any]:
        return wait_for(
            lambda: _terminal(self.status(batch_id).json()), timeout, f"batch {batch_id} to finish"
        )


def _terminal(status: dict[str, Any]) -> dict[str, Any] | None:
    return status if status.get("is_terminal") else None


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@contextmanager
def started_stack(state_dir: Path, overrides: dict[str, str], tenant: str) -> Iterator[Stack]:
    """A local stack from template.yaml with these parameter overrides, and a key for `tenant`.
    One per process at a time: a second one resets moto's process-wide state (see the hook above)."""
    from filebatch_local.stack import LocalStack

    local = LocalStack(PROJECT_ROOT, api_port=0, parameter_overrides=overrides, state_dir=state_dir)
    local.start()
    try:
        yield Stack(api_url=local.api_url, api_key=local.create_api_key(tenant), local=local)
    finally:
        local.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with started_stack(
        tmp_path_factory.mktemp("local-stack"), {"DescribeFaultInjection": FAULTS}, "e2e"
    ) as started:
        _SESSION_STACKS.append(started.local)
        yield started
