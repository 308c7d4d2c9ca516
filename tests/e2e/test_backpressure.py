"""Backpressure toward the description provider: however many batches run at once, the describe
function runs at most `DescribeConcurrency` invocations at a time (its reserved concurrency). Lambda
throttles the rest, the describe step's Retry on Lambda.TooManyRequestsException waits for a turn,
and every file still completes.

A stack of its own: with DescribeConcurrency 2, five small batches are a burst."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import Stack, started_stack
from tests.e2e.test_batch_lifecycle import png

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]

DESCRIBE_CONCURRENCY = 2
BATCHES = 5
FILES_PER_BATCH = 3
# Each describe holds its turn this long, as a provider taking a second per call would: the five
# batches' describes then overlap on any machine, however fast the local provider is.
DESCRIBE_SECONDS = 1.0


@pytest.fixture(scope="module")
def throttled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    overrides = {"DescribeConcurrency": str(DESCRIBE_CONCURRENCY)}
    with started_stack(tmp_path_factory.mktemp("throttled-stack"), overrides, "burst") as stack:
        yield stack


def test_concurrent_batches_never_run_more_describes_than_the_bound_and_every_file_completes(
    throttled_stack: Stack,
) -> None:
    stack = throttled_stack
    # Given a stack whose describe function may run 2 invocations at once, each taking a second
    slow = stack.local.inject_latency("DescribeFileFunction", "burst-", DESCRIBE_SECONDS)
    batches = [
        [(f"burst-{b}-{f}.png", png(8 + b, 8 + f), "image/png") for f in range(FILES_PER_BATCH)]
        for b in range(BATCHES)
    ]
    # When five batches are created and uploaded at the same time
    with ThreadPoolExecutor(max_workers=BATCHES) as pool:
        batch_ids = list(pool.map(stack.submit, batches))
    statuses = [stack.wait_terminal(batch_id, timeout=600) for batch_id in batch_ids]
    # Then the describe function never ran more than 2 at once, although more were asked for at
    # once: Lambda throttled the excess
    assert stack.local.peak_concurrent_executions("DescribeFileFunction") == DESCRIBE_CONCURRENCY
    assert stack.local.throttles("DescribeFileFunction") > 0
    # And every file was described and completed: the throttled describes waited for their turn
    assert [status["status"] for status in statuses] == ["completed"] * BATCHES
    for batch_id, files in zip(batch_ids, batches, strict=True):
        results = stack.results(batch_id)
        assert [r["filename"] for r in results] == [name for name, _, _ in files]
        assert all(r["status"] == "completed" and r["description"]["text"] for r in results), results
    assert slow.delayed == BATCHES * FILES_PER_BATCH
