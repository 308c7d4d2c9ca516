"""Backoff arithmetic shared by API calls and uploads (no I/O here, so it is easy to reason about)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 429: throttled (API Gateway or S3 "SlowDown"); 5xx: the service or a dependency had a fault.
# Other 4xx mean the request itself is wrong, and sending it again cannot help.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers that mean the request had no effect: safe to retry even when it is not idempotent.
NOT_APPLIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, unless the server said how long to wait (Retry-After)."""

    base: float = 0.5
    cap: float = 30.0
    # A server may ask for a long pause; honour it, but not beyond what a caller would sit through.
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt + 1` (attempt counts from 0)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.cap, self.base * 2.0**attempt)
        # "Equal jitter": always wait at least half the step, so delays still grow, while the random
        # half spreads out concurrent uploads that failed together instead of retrying in lockstep.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)
