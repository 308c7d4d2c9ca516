"""Webhooks at the service level: signing (the Standard Webhooks spec's own example), the tenant's
secret and its rotation, the SSRF checks (with a fake resolver), a batch's webhook at create, one
delivery attempt and the retry backoff."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from filebatch.errors import ConflictError, FilebatchError, InvalidRequestError
from filebatch.models.api import BatchStatusResponse, CreateBatchRequest, FileSpec
from filebatch.models.domain import BatchStatus, Tenant, WebhookSecret
from filebatch.models.events import BatchEndedDetail
from filebatch.services.batches import UploadLimits, create_batch, get_batch_status
from filebatch.services.cursors import CursorSigner
from filebatch.services.ports import WebhookResponse
from filebatch.services.webhooks import (
    RETRY_DELAY_CAP_S,
    ROTATION_OVERLAP,
    DeliveryOutcome,
    WebhookDeliveryError,
    WebhookPolicy,
    WebhookUrlRefusedError,
    address_kind,
    check_webhook_url,
    deliver_webhook,
    new_webhook_secret,
    retry_delay_s,
    retry_schedule,
    rotate_webhook_secret,
    secret_key,
    sign,
    signature_header,
)
from tests.unit.fakes import (
    FakeResolver,
    InMemoryRepository,
    InMemoryStorage,
    RecordingQueue,
    RecordingTransport,
    StaticCursorKeys,
)

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
ACME = Tenant(tenant_id="acme")
PUBLIC = "93.184.215.14"
RESOLVER = FakeResolver(
    {
        "hooks.example.com": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        "localhost": ["127.0.0.1", "::1"],
        "internal.example.com": ["10.0.3.7"],
        "split.example.com": [PUBLIC, "169.254.169.254"],
    }
)


# -- signing ---------------------------------------------------------------------------------------
def test_signing_matches_the_standard_webhooks_example() -> None:
    # The reference libraries' own test vector (standard-webhooks/standard-webhooks, test_sign_function)
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_two_active_secrets_sign_as_a_space_separated_list_current_first() -> None:
    current, previous = new_webhook_secret(), new_webhook_secret()
    header = signature_header([current, previous], "b-1:0:completed", 1700000000, b"{}")
    first, second = header.split(" ")
    assert first == sign(current, "b-1:0:completed", 1700000000, b"{}")
    assert second == sign(previous, "b-1:0:completed", 1700000000, b"{}")
    # And a receiver holding either secret verifies one of them, as the spec's verifiers do
    for secret in (current, previous):
        expected = hmac.new(secret_key(secret), b"b-1:0:completed.1700000000.{}", hashlib.sha256).digest()
        assert "v1," + base64.b64encode(expected).decode() in header.split(" ")


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(secret_key(secret)) == 32
    assert new_webhook_secret() != secret
    # Secrets outside the spec's 24 to 64 bytes, or not base64, are not keys
    for bad in ("whsec_" + base64.b64encode(b"x" * 16).decode(), "whsec_not base64!"):
        with pytest.raises(ValueError):
            secret_key(bad)


# -- the tenant's secret ------------------------------------------------------------------------------
def test_the_first_secret_has_no_predecessor_and_a_rotation_keeps_the_old_one_signing_for_24_hours() -> None:
    repo = InMemoryRepository()
    first = rotate_webhook_secret(repo, "acme", now=NOW)
    assert first.previous_secret_valid_until is None
    assert repo.webhook_secrets["acme"].signing_secrets(NOW) == [first.secret]

    later = NOW + timedelta(hours=1)
    second = rotate_webhook_secret(repo, "acme", now=later)
    stored = repo.webhook_secrets["acme"]
    assert second.secret != first.secret and second.created_at == later
    assert second.previous_secret_valid_until == later + ROTATION_OVERLAP == later + timedelta(hours=24)
    # Both sign until the overlap ends, then only the new one
    assert stored.signing_secrets(later) == [second.secret, first.secret]
    assert stored.signing_secrets(later + timedelta(hours=24)) == [second.secret]


def test_a_rotation_that_lost_a_race_changes_nothing_and_says_so() -> None:
    repo = InMemoryRepository()
    rotate_webhook_secret(repo, "acme", now=NOW)
    stored = repo.webhook_secrets["acme"]

    class Racing(InMemoryRepository):
        def get_webhook_secret(self, tenant_id: str) -> WebhookSecret | None:
            seen = super().get_webhook_secret(tenant_id)
            # Another rotation lands between this one's read and its write
            self.webhook_secrets[tenant_id] = stored.model_copy(update={"created_at": NOW + timedelta(1)})
            return seen

    racing = Racing()
    racing.webhook_secrets["acme"] = stored
    with pytest.raises(ConflictError) as refused:
        rotate_webhook_secret(racing, "acme", now=NOW + timedelta(hours=2))
    assert refused.value.code == "rotation_in_progress"
    assert racing.webhook_secrets["acme"].secret == stored.secret


# -- URL checks (SSRF) -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("93.184.215.14", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # the instance metadata service
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"),  # EC2's IPv6 metadata endpoint
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),  # carrier-grade NAT
        ("192.0.2.10", "private"),  # documentation
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ],
)
def test_addresses_are_public_or_named_for_what_they_are(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind


def test_a_public_https_url_is_accepted_with_every_address_it_resolves_to() -> None:
    target = check_webhook_url("https://hooks.example.com:8443/in/batches?token=abc", RESOLVER)
    assert target.scheme == "https" and target.host == "hooks.example.com" and target.port == 8443
    assert target.target == "/in/batches?token=abc"
    assert target.addresses == tuple(RESOLVER.table["hooks.example.com"])
    assert check_webhook_url("https://hooks.example.com", RESOLVER).target == "/"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/in", "https"),
        ("ftp://hooks.example.com/in", "https"),
        ("https://internal.example.com/in", "10.0.3.7, a private address"),
        # One bad address is enough: the name could be answered with it at delivery.
        ("https://split.example.com/in", "169.254.169.254, a link-local address"),
        ("https://localhost/in", "loopback"),
        ("https://127.0.0.1/in", "loopback"),
        ("https://[::1]/in", "loopback"),
        ("https://nowhere.example.com/in", "does not resolve"),
        ("https://user:pw@hooks.example.com/in", "credentials"),
        ("https://hooks.example.com:99999/in", "not a valid URL"),
        ("https:///in", "no host"),
    ],
)
def test_urls_that_are_not_public_https_are_refused_on_aws(url: str, reason: str) -> None:
    resolver = FakeResolver({**RESOLVER.table, "127.0.0.1": ["127.0.0.1"], "::1": ["::1"]})
    with pytest.raises(WebhookUrlRefusedError) as refused:
        check_webhook_url(url, resolver)
    assert refused.value.code == "webhook_url_refused" and refused.value.http_status == 400
    assert reason in refused.value.message


def test_a_deployment_that_allows_loopback_takes_loopback_http_urls_and_nothing_else_more() -> None:
    resolver = FakeResolver({**RESOLVER.table, "127.0.0.1": ["127.0.0.1"]})
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "https://localhost/hook"):
        assert check_webhook_url(url, resolver, allow_loopback=True).addresses
    # Public hosts still need https, private ones stay refused, and a name mixing loopback and
    # public addresses is not "loopback only"
    mixed = FakeResolver({"mixed.example.com": ["127.0.0.1", PUBLIC], **RESOLVER.table})
    for url in ("http://hooks.example.com/", "https://internal.example.com/", "http://mixed.example.com/"):
        with pytest.raises(WebhookUrlRefusedError):
            check_webhook_url(url, mixed, allow_loopback=True)


# -- a batch's webhook -------------------------------------------------------------------------------
LIMITS = UploadLimits(max_files=10, max_file_bytes=1000, url_ttl_seconds=900)


def _create(repo: InMemoryRepository, webhook_url: str | None, policy: WebhookPolicy | None) -> str:
    request = CreateBatchRequest(
        files=[FileSpec(filename="a.jpg", size=10, content_type="image/jpeg")], webhook_url=webhook_url
    )
    created = create_batch(
        repo,
        InMemoryStorage(),
        ACME,
        request,
        limits=LIMITS,
        retention_days=30,
        cursors=CursorSigner(StaticCursorKeys()),
        now=NOW,
        webhooks=policy,
    )
    assert created.webhook_url == webhook_url
    return created.batch_id


def test_a_batch_with_a_webhook_needs_a_secret_and_a_url_that_may_be_called() -> None:
    repo = InMemoryRepository()
    policy = WebhookPolicy(resolver=RESOLVER)
    # No secret yet: refused, and nothing counted against the plan
    with pytest.raises(InvalidRequestError) as missing:
        _create(repo, "https://hooks.example.com/in", policy)
    assert missing.value.code == "webhook_secret_missing" and repo.batches == {}
    assert repo.open_batches.get("acme", 0) == 0

    rotate_webhook_secret(repo, "acme", now=NOW)
    with pytest.raises(InvalidRequestError) as refused:
        _create(repo, "https://internal.example.com/in", policy)
    assert refused.value.code == "webhook_url_refused" and repo.batches == {}

    # Accepted: the batch keeps it, and its status body shows it
    batch_id = _create(repo, "https://hooks.example.com/in", policy)
    status = get_batch_status(repo, ACME, batch_id, provider="local", now=NOW)
    assert status.webhook_url == "https://hooks.example.com/in"
    # A batch without a webhook needs neither (and no resolver is asked)
    lookups = len(RESOLVER.lookups)
    assert (
        get_batch_status(repo, ACME, _create(repo, None, None), provider="local", now=NOW).webhook_url is None
    )
    assert len(RESOLVER.lookups) == lookups


def test_a_webhook_url_given_to_a_function_without_a_policy_is_a_configuration_fault() -> None:
    repo = InMemoryRepository()
    rotate_webhook_secret(repo, "acme", now=NOW)
    with pytest.raises(FilebatchError) as fault:
        _create(repo, "https://hooks.example.com/in", None)
    assert fault.value.code == "misconfigured" and fault.value.http_status == 500


# -- delivery --------------------------------------------------------------------------------------
def _ended(url: str | None = "https://hooks.example.com/in") -> BatchEndedDetail:
    return BatchEndedDetail(
        batch_id="b-" + "1" * 32,
        status=BatchStatus.COMPLETED,
        is_terminal=True,
        counts={
            "total": 1,
            "awaiting_upload": 0,
            "uploaded": 0,
            "processing": 0,
            "completed": 1,
            "failed": 0,
            "cancelled": 0,
            "upload_expired": 0,
            "skipped": 0,
        },
        usage={"input_tokens": 0, "output_tokens": 0},
        description={
            "provider": "local",
            "prompt": None,
            "language": None,
            "detail": "standard",
            "ignored": [],
            "note": None,
        },
        progress_percentage=100.0,
        eta_seconds=None,
        retries=0,
        upload_deadline=None,
        closed_at=None,
        created_at=NOW,
        updated_at=NOW,
        finished_at=NOW,
        webhook_url=url,
        tenant_id="acme",
        event_id="b-" + "1" * 32 + ":0:completed",
    )


def _deliver(
    repo: InMemoryRepository,
    transport: RecordingTransport,
    queue: RecordingQueue,
    *,
    receive_count: int = 1,
    resolver: FakeResolver = RESOLVER,
    event: BatchEndedDetail | None = None,
    now: datetime = NOW,
) -> DeliveryOutcome:
    return deliver_webhook(
        repo,
        transport,
        queue,
        event or _ended(),
        receipt_handle="receipt-1",
        receive_count=receive_count,
        policy=WebhookPolicy(resolver=resolver),
        retry_base_s=60,
        now=now,
    )


def test_a_delivery_posts_the_status_body_signed_with_the_event_id_to_a_checked_address() -> None:
    repo = InMemoryRepository()
    secret = rotate_webhook_secret(repo, "acme", now=NOW).secret
    transport, queue = RecordingTransport(204), RecordingQueue()

    assert _deliver(repo, transport, queue) is DeliveryOutcome.DELIVERED
    [(target, headers, body)] = transport.sent
    # The body is the status body alone (no tenant or event id), as GET answers it
    assert BatchStatusResponse.model_validate_json(body) == _ended().status_body()
    assert b"tenant_id" not in body and b"event_id" not in body
    assert headers["webhook-id"] == f"b-{'1' * 32}:0:completed"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-signature"] == sign(secret, headers["webhook-id"], int(NOW.timestamp()), body)
    assert headers["Content-Type"] == "application/json"
    # The request goes to the addresses that were checked
    assert target.addresses == tuple(RESOLVER.table["hooks.example.com"])
    assert target.host == "hooks.example.com"
    assert queue.postponed == []


def test_during_a_rotation_deliveries_carry_both_signatures() -> None:
    repo = InMemoryRepository()
    old = rotate_webhook_secret(repo, "acme", now=NOW - timedelta(hours=2)).secret
    new = rotate_webhook_secret(repo, "acme", now=NOW - timedelta(hours=1)).secret
    transport = RecordingTransport(200)
    _deliver(repo, transport, RecordingQueue())
    [(_, headers, body)] = transport.sent
    stamp = int(NOW.timestamp())
    assert headers["webhook-signature"] == f"{sign(new, headers['webhook-id'], stamp, body)} " + sign(
        old, headers["webhook-id"], stamp, body
    )


@pytest.mark.parametrize(
    "answer",
    [500, 503, 408, 429, 404, 401, 301, ConnectionRefusedError("refused"), TimeoutError("timed out")],
)
def test_a_failed_attempt_is_postponed_by_the_backoff_and_reported_failed(answer: int | OSError) -> None:
    repo = InMemoryRepository()
    rotate_webhook_secret(repo, "acme", now=NOW)
    queue = RecordingQueue()
    with pytest.raises(WebhookDeliveryError) as failed:
        _deliver(repo, RecordingTransport(answer), queue, receive_count=3)
    assert queue.postponed == [("receipt-1", 240)]  # 60 · 2^(3-1)
    assert "attempt 3" in failed.value.message and "next attempt in 240 s" in failed.value.message


def test_a_receivers_retry_after_is_honoured_up_to_the_cap() -> None:
    repo = InMemoryRepository()
    rotate_webhook_secret(repo, "acme", now=NOW)
    queue = RecordingQueue()
    for retry_after in (900, 10**6, 5):
        with pytest.raises(WebhookDeliveryError):
            _deliver(repo, RecordingTransport(WebhookResponse(429, retry_after)), queue)
    assert queue.postponed == [("receipt-1", 900), ("receipt-1", RETRY_DELAY_CAP_S), ("receipt-1", 60)]


def test_410_gone_is_not_retried_and_a_batch_without_webhook_sends_nothing() -> None:
    repo = InMemoryRepository()
    rotate_webhook_secret(repo, "acme", now=NOW)
    queue, transport = RecordingQueue(), RecordingTransport(410)
    assert _deliver(repo, transport, queue) is DeliveryOutcome.GONE
    assert _deliver(repo, transport, queue, event=_ended(None)) is DeliveryOutcome.NO_WEBHOOK
    assert len(transport.sent) == 1 and queue.postponed == []


def test_a_name_that_now_resolves_inside_is_not_called_but_retried() -> None:
    # Given a URL accepted at create, whose name now answers with the metadata service (DNS rebinding)
    repo = InMemoryRepository()
    rotate_webhook_secret(repo, "acme", now=NOW)
    rebound = FakeResolver({"hooks.example.com": ["169.254.169.254"]})
    transport, queue = RecordingTransport(), RecordingQueue()
    with pytest.raises(WebhookDeliveryError) as failed:
        _deliver(repo, transport, queue, resolver=rebound)
    # Then nothing was sent, and the attempt is retried later (the name may come back)
    assert transport.sent == [] and queue.postponed == [("receipt-1", 60)]
    assert "link-local" in failed.value.message


def test_without_a_secret_nothing_is_sent_and_the_attempt_is_retried() -> None:
    transport, queue = RecordingTransport(), RecordingQueue()
    with pytest.raises(WebhookDeliveryError):
        _deliver(InMemoryRepository(), transport, queue)
    assert transport.sent == [] and queue.postponed == [("receipt-1", 60)]


# -- backoff ---------------------------------------------------------------------------------------
def test_the_backoff_doubles_from_the_base_up_to_six_hours_with_bounded_jitter() -> None:
    assert [retry_delay_s(n, 60) for n in range(1, 12)] == [
        60,
        120,
        240,
        480,
        960,
        1920,
        3840,
        7680,
        15360,
        21600,
        21600,
    ]
    assert retry_delay_s(10**6, 60) == RETRY_DELAY_CAP_S == 6 * 3600
    # Jitter only adds, at most 10 %: the schedule's lower bound is the one without it, and the cap
    # plus jitter stays under SQS's 12-hour visibility limit
    assert retry_delay_s(4, 60, jitter=0.999) == 527
    assert retry_delay_s(50, 60, jitter=0.999) < 12 * 3600
    assert retry_schedule(1, 4) == [0, 1, 3, 7]


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://hooks.example.com/in?token=a%20b", True),
        ("http://127.0.0.1:8080/hook", True),  # well formed; whether it may be called is the service's call
        ("ftp://hooks.example.com/", False),
        ("HTTPS://hooks.example.com/", False),
        ("https://hooks.example.com/a b", False),
        ("https://hooks.example.com/\r\nX-Injected: 1", False),
        ("https://bücher.example/", False),  # punycode it: xn--bcher-kva.example
        ("https://hooks.example.com/" + "a" * 2030, False),
        ("", False),
    ],
)
def test_the_request_model_takes_printable_ascii_http_urls_of_at_most_2048_characters(
    url: str, valid: bool
) -> None:
    from pydantic import ValidationError

    files = [{"filename": "a.jpg", "size": 1, "content_type": "image/jpeg"}]
    if valid:
        assert CreateBatchRequest.model_validate({"files": files, "webhook_url": url}).webhook_url == url
    else:
        with pytest.raises(ValidationError):
            CreateBatchRequest.model_validate({"files": files, "webhook_url": url})
