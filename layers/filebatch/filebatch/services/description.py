"""Describing a file: the provider contract, the choice of provider by configuration, and the
fault-injection wrapper used for resilience tests.

A provider raises `RetryableDescriptionError` for failures that may pass on retry (throttling,
timeouts) and `PermanentDescriptionError` for media it cannot describe; those two class names are
what the state machine's Retry and Catch match on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from filebatch.errors import (
    InvalidRequestError,
    RetryableDescriptionError,
)
from filebatch.media.source import MediaSource
from filebatch.models.domain import DEFAULT_INSTRUCTIONS, Description, DescriptionInstructions, FileFacts


class DescriptionProvider(Protocol):
    name: str

    def describe(
        self,
        media: MediaSource,
        facts: FileFacts,
        filename: str,
        instructions: DescriptionInstructions = DEFAULT_INSTRUCTIONS,
    ) -> Description:
        """Say true things about `media`, whose verified facts are `facts`, reading only as much of
        it as the provider needs, following the batch's `instructions` as far as PROVIDER_ABILITIES
        says it can."""
        ...


@dataclass(frozen=True)
class ProviderAbilities:
    """Which of a batch's instructions a provider follows: told to the client in the batch status
    before a file is described, so nobody waits for a prompt that will be ignored."""

    follows: frozenset[str]
    # Languages it writes (primary subtags), or None for any.
    languages: frozenset[str] | None
    note: str

    def ignored(self, instructions: DescriptionInstructions) -> list[str]:
        ignored = [name for name in instructions.given() if name not in self.follows]
        if (
            instructions.language is not None
            and "language" not in ignored
            and self.languages is not None
            and instructions.language.split("-", 1)[0].lower() not in self.languages
        ):
            ignored.append("language")
        return sorted(ignored)


PROVIDER_ABILITIES: dict[str, ProviderAbilities] = {
    "local": ProviderAbilities(
        follows=frozenset({"language"}),
        languages=frozenset({"en"}),
        note="The local provider measures the file and writes in English; it takes no prompt and has "
        "one level of detail.",
    ),
    "bedrock": ProviderAbilities(
        follows=frozenset({"prompt", "language", "detail"}),
        languages=None,
        note="",
    ),
}


ProviderFactory = Callable[[], DescriptionProvider]

# A model reply that does not match the agreed shape is retried this many times, by its own retrier
# in the state machine (ProviderBadOutputError); the Catch then records it, not retryable. Its own
# retrier counts its own attempts: throttled retries in between do not use this budget up.
BAD_OUTPUT_RETRIES = 2


def abilities_of(provider: str) -> ProviderAbilities:
    try:
        return PROVIDER_ABILITIES[provider]
    except KeyError:
        raise InvalidRequestError(
            f"unknown description provider {provider!r}", code="unknown_provider"
        ) from None


def provider_named(name: str, registry: Mapping[str, ProviderFactory]) -> DescriptionProvider:
    """The provider configured as `name` (DESCRIPTION_PROVIDER), from the composition root's registry."""
    try:
        factory = registry[name]
    except KeyError:
        raise InvalidRequestError(
            f"unknown description provider {name!r}; known: {', '.join(sorted(registry))}",
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
    instructions: DescriptionInstructions = DEFAULT_INSTRUCTIONS,
) -> Description:
    """Describe one file. `attempt` is the describe step's retry count ($$.State.RetryCount, 0 first),
    which fault injection counts on. A provider's bad output leaves as ProviderBadOutputError, which
    the state machine retries BAD_OUTPUT_RETRIES times with a retrier of its own."""
    if faults is not None:
        faults.check(filename, attempt)
    return provider.describe(media, facts, filename, instructions)
