"""Webhooks: the tenant's signing secret, the checks on a webhook URL (SSRF), signing (Standard
Webhooks) and one delivery attempt with its retry delay. docs/webhooks.md tells the receiver's side.

A URL is checked when the batch is created and again at every delivery attempt: the host is resolved,
every address it resolves to must be public, and the request is made to one of exactly those
addresses (a name that resolves elsewhere a second later is not asked again: no DNS rebinding)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from filebatch.errors import ConflictError, FilebatchError, InvalidRequestError
from filebatch.models.api import WebhookSecretResponse
from filebatch.models.domain import WEBHOOK_SECRET_PREFIX, WebhookSecret
from filebatch.models.events import BatchEndedDetail
from filebatch.services.ports import (
    BatchRepository,
    DeliveryQueue,
    HostResolver,
    WebhookTarget,
    WebhookTransport,
)

# -- secrets ---------------------------------------------------------------------------------------
# Standard Webhooks: a random secret of 24 to 64 bytes, base64, prefixed `whsec_`. Ours are 32 bytes.
SECRET_BYTES = 32
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
# After a rotation the replaced secret keeps signing alongside the new one for this long, so that a
# receiver can switch over without refusing a delivery.
ROTATION_OVERLAP = timedelta(hours=24)


def new_webhook_secret(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(random_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for: its base64-decoded bytes."""
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except binascii.Error as error:
        raise ValueError("a webhook secret is whsec_ and base64") from error
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"a webhook secret decodes to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return key


def rotate_webhook_secret(
    repo: BatchRepository,
    tenant_id: str,
    *,
    now: datetime,
    make_secret: Callable[[], str] = new_webhook_secret,
) -> WebhookSecretResponse:
    """Create the tenant's first secret, or replace it: the replaced one keeps signing alongside for
    ROTATION_OVERLAP (one replaced secret at most: rotating again drops the older one at once)."""
    current = repo.get_webhook_secret(tenant_id)
    rotated = WebhookSecret(
        tenant_id=tenant_id,
        secret=make_secret(),
        created_at=now,
        previous_secret=current.secret if current else None,
        previous_valid_until=now + ROTATION_OVERLAP if current else None,
    )
    if not repo.put_webhook_secret(rotated, replacing=current.created_at if current else None):
        raise ConflictError(
            "another rotation of the webhook secret happened meanwhile; retry to rotate again",
            code="rotation_in_progress",
        )
    return WebhookSecretResponse(
        secret=rotated.secret,
        created_at=rotated.created_at,
        previous_secret_valid_until=rotated.previous_valid_until,
    )


# -- signing (Standard Webhooks, symmetric) --------------------------------------------------------
def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>` keyed with the secret's bytes."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: one signature per active secret, space-separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in signing_secrets)


def webhook_headers(
    signing_secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "filebatch-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(signing_secrets, message_id, timestamp, body),
    }


# -- URL checks (SSRF) -----------------------------------------------------------------------------
class WebhookUrlRefusedError(InvalidRequestError):
    code = "webhook_url_refused"


@dataclass(frozen=True)
class WebhookPolicy:
    """What the deployment lets a webhook call. `allow_loopback` (template parameter
    WebhookAllowLoopback; true only on the local stack) also admits http(s) URLs whose host resolves
    to loopback addresses only; otherwise every address must be public and the scheme https."""

    resolver: HostResolver
    allow_loopback: bool = False


_DEFAULT_PORTS = {"https": 443, "http": 80}
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052 and RFC 8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to (mapped, 6to4, Teredo, NAT64): each must pass too."""
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo:
        found += list(address.teredo)
    if any(address in network for network in _NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def address_kind(text: str) -> str | None:
    """Why an address may not be called ("private", "loopback", ...), or None when it is public."""
    address = ipaddress.ip_address(text)
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        # The IPv4 address it leads to first: it says more ("private") than its prefix ("reserved").
        candidates = [*_embedded_ipv4(address), address]
    for candidate in candidates:
        for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
            if getattr(candidate, f"is_{kind}"):
                return kind.replace("_", "-")
        if not candidate.is_global:
            # Shared address space (100.64.0.0/10), documentation ranges, benchmarking... not routable
            # on the internet, so not where a receiver lives.
            return "non-global"
    return None


def _refuse(message: str) -> WebhookUrlRefusedError:
    return WebhookUrlRefusedError(message)


def check_webhook_url(url: str, resolver: HostResolver, *, allow_loopback: bool = False) -> WebhookTarget:
    """The URL's target with the addresses it may be called at, or WebhookUrlRefusedError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _refuse(f"webhook_url is not a valid URL: {error}") from None
    scheme = parts.scheme
    if scheme not in _DEFAULT_PORTS:
        raise _refuse("webhook_url must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise _refuse("webhook_url may not carry credentials (user:password@); put a token in its path")
    host = parts.hostname
    if not host:
        raise _refuse("webhook_url has no host")
    port = port or _DEFAULT_PORTS[scheme]
    try:
        addresses = list(dict.fromkeys(resolver.resolve(host, port)))
    except (OSError, UnicodeError):
        raise _refuse(f"the host of webhook_url ({host}) does not resolve") from None
    if not addresses:
        raise _refuse(f"the host of webhook_url ({host}) does not resolve")
    kinds = {address: address_kind(address) for address in addresses}
    loopback_only = allow_loopback and all(kind == "loopback" for kind in kinds.values())
    if not loopback_only:
        if scheme != "https":
            raise _refuse("webhook_url must be an https URL")
        for address, kind in kinds.items():
            if kind is not None:
                raise _refuse(f"the host of webhook_url ({host}) resolves to {address}, a {kind} address")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return WebhookTarget(scheme=scheme, host=host, port=port, target=target, addresses=tuple(addresses))


def accept_webhook_url(repo: BatchRepository, tenant_id: str, url: str, policy: WebhookPolicy | None) -> None:
    """A new batch's webhook: the tenant has a secret to sign with, and the URL may be called."""
    if policy is None:
        raise FilebatchError("webhooks are not configured for this function", code="misconfigured")
    if repo.get_webhook_secret(tenant_id) is None:
        raise InvalidRequestError(
            "create a webhook secret first (POST /v1/webhooks/secret): deliveries are signed with it",
            code="webhook_secret_missing",
        )
    check_webhook_url(url, policy.resolver, allow_loopback=policy.allow_loopback)


# -- delivery --------------------------------------------------------------------------------------
# Exponential backoff from the message's receive count: base · 2^(n-1), capped. A visibility
# timeout may not reach past 12 hours from the receive; 6 hours (plus jitter) stays clear of it.
RETRY_DELAY_CAP_S = 6 * 3600
# Up to this fraction is added at random, so that receivers coming back are not hit all at once.
RETRY_JITTER = 0.1


def retry_delay_s(
    receive_count: int, base_s: int, *, jitter: float = 0.0, retry_after_s: int | None = None
) -> int:
    """Seconds until the next attempt after attempt `receive_count` (1 = the first) failed. `jitter`
    in [0, 1) adds up to RETRY_JITTER of the delay; a receiver's Retry-After is honoured up to the cap."""
    exponent = min(max(receive_count, 1) - 1, 32)
    delay = min(RETRY_DELAY_CAP_S, base_s * 2**exponent)
    if retry_after_s is not None and retry_after_s > delay:
        delay = min(retry_after_s, RETRY_DELAY_CAP_S)
    return int(delay * (1 + RETRY_JITTER * min(max(jitter, 0.0), 1.0)))


def retry_schedule(base_s: int, max_receive_count: int) -> list[int]:
    """When each attempt starts (seconds after the first, jitter and run time left out) for a queue
    that dead-letters a message after `max_receive_count` receives."""
    starts = [0]
    for attempt in range(1, max_receive_count):
        starts.append(starts[-1] + retry_delay_s(attempt, base_s))
    return starts


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    # 410 Gone: the receiver asks not to be sent this again (Standard Webhooks): not retried.
    GONE = "gone"
    # The batch has no webhook (the rule only routes events with one; kept for safety).
    NO_WEBHOOK = "no_webhook"


class WebhookDeliveryError(FilebatchError):
    """This attempt failed; the message comes back after the delay it was postponed by."""

    code = "webhook_not_delivered"
    http_status = 502


class _AttemptFailed(Exception):
    def __init__(self, reason: str, retry_after_s: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


def _attempt(
    repo: BatchRepository,
    transport: WebhookTransport,
    event: BatchEndedDetail,
    url: str,
    *,
    policy: WebhookPolicy,
    now: datetime,
) -> DeliveryOutcome:
    secret = repo.get_webhook_secret(event.tenant_id)
    if secret is None:
        raise _AttemptFailed("the tenant has no webhook secret to sign with")
    try:
        # Again at delivery: the name may resolve elsewhere now than when the batch was created.
        target = check_webhook_url(url, policy.resolver, allow_loopback=policy.allow_loopback)
    except WebhookUrlRefusedError as refused:
        raise _AttemptFailed(refused.message) from None
    body = event.status_body().model_dump_json().encode()
    headers = webhook_headers(secret.signing_secrets(now), event.event_id, int(now.timestamp()), body)
    try:
        response = transport.post(target, headers, body)
    except OSError as error:
        raise _AttemptFailed(f"no answer from {target.host}: {error}") from None
    if 200 <= response.status < 300:
        return DeliveryOutcome.DELIVERED
    if response.status == 410:
        return DeliveryOutcome.GONE
    # Everything else is retried, 4xx included: a receiver refusing for its own misconfiguration (a
    # 401 while it rolls out a rotated secret, a 404 during a deploy) usually recovers within the day.
    raise _AttemptFailed(f"{target.host} answered {response.status}", response.retry_after_s)


def deliver_webhook(
    repo: BatchRepository,
    transport: WebhookTransport,
    queue: DeliveryQueue,
    event: BatchEndedDetail,
    *,
    receipt_handle: str,
    receive_count: int,
    policy: WebhookPolicy,
    retry_base_s: int,
    now: datetime,
    jitter: float = 0.0,
) -> DeliveryOutcome:
    """One delivery attempt of a batch's end to its webhook. On failure the message is postponed by
    the backoff for its receive count and WebhookDeliveryError is raised (the item is reported failed
    and comes back then); after the queue's maxReceiveCount it goes to the dead-letter queue."""
    if event.webhook_url is None:
        return DeliveryOutcome.NO_WEBHOOK
    try:
        return _attempt(repo, transport, event, event.webhook_url, policy=policy, now=now)
    except _AttemptFailed as failure:
        delay = retry_delay_s(receive_count, retry_base_s, jitter=jitter, retry_after_s=failure.retry_after_s)
        queue.postpone(receipt_handle, delay)
        raise WebhookDeliveryError(
            f"attempt {receive_count} of {event.event_id} failed: {failure}; next attempt in {delay} s"
        ) from None
