"""Describing a file: the provider contract, the choice of provider by configuration, and the
fault-injection wrapper used for resilience tests.

A provider raises `RetryableDescriptionError` for failures that may pass on retry (throttling,
timeouts) and `PermanentDescriptionError` for media it cannot describe; those two class names are
what the state machine's Retry and Catch match on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from filebatch.errors import InvalidRequestError, RetryableDescriptionError
from filebatch.media.source import MediaSource
from filebatch.models.domain import Description, FileFacts


class DescriptionProvider(Protocol):
    name: str

    def describe(self, media: MediaSource, facts: FileFacts, filename: str) -> Description:
        """Say true things about `media`, whose verified facts are `facts`, reading only as much of
        it as the provider needs."""
        ...


ProviderFactory = Callable[[], DescriptionProvider]


def _local_provider() -> DescriptionProvider:
    from filebatch.media.local_provider import LocalDescriptionProvider

    provider: DescriptionProvider = LocalDescriptionProvider()
    return provider


# Name in configuration (DESCRIPTION_PROVIDER) → factory. Imports are deferred so that a function
# only loads the provider it uses.
PROVIDERS: dict[str, ProviderFactory] = {"local": _local_provider}


def provider_named(name: str) -> DescriptionProvider:
    try:
        factory = PROVIDERS[name]
    except KeyError:
        raise InvalidRequestError(
            f"unknown description provider {name!r}; known: {', '.join(sorted(PROVIDERS))}",
            code="unknown_provider",
        ) from None
    return factory()


class FaultInjection:
    """Make the provider throttle for chosen files, for their first N attempts.

    Spec: comma-separated rules "throttle:<filename fragment>:<failing attempts>". For example
    "throttle:flaky:2,throttle:hopeless:99" throttles files whose name contains "flaky" on attempts
    0 and 1 (the retry then succeeds) and files named like "hopeless" on every attempt (retries run
    out and the failure is recorded as retryable). Off when empty. Production leaves it empty;
    resilience tests and game days set it (template parameter DescribeFaultInjection).
    """

    def __init__(self, rules: dict[str, int]) -> None:
        self.rules = rules

    @classmethod
    def parse(cls, spec: str) -> FaultInjection | None:
        if not spec:
            return None
        rules: dict[str, int] = {}
        for rule in spec.split(","):
            kind, _, rest = rule.strip().partition(":")
            fragment, _, attempts = rest.rpartition(":")
            if kind != "throttle" or not fragment or not attempts.isdigit():
                raise InvalidRequestError(
                    f"bad fault injection rule {rule!r}; expected throttle:<fragment>:<attempts>",
                    code="bad_fault_injection",
                )
            rules[fragment] = int(attempts)
        return cls(rules)

    def check(self, filename: str, attempt: int) -> None:
        for fragment, failing_attempts in self.rules.items():
            if fragment in filename and attempt < failing_attempts:
                raise RetryableDescriptionError(
                    f"injected throttling on attempt {attempt} (fault injection {fragment!r})",
                    code="provider_throttled",
                )


def describe_file(
    provider: DescriptionProvider,
    media: MediaSource,
    facts: FileFacts,
    filename: str,
    *,
    attempt: int = 0,
    faults: FaultInjection | None = None,
) -> Description:
    if faults is not None:
        faults.check(filename, attempt)
    return provider.describe(media, facts, filename)
