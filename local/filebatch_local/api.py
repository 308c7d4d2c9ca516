"""A REST API Gateway stand-in: every `Type: Api` event of the template as a Lambda proxy route,
behind the Api's TOKEN Lambda authorizer, metered by the stage's usage plans where the route
requires an API key, with the Api's GatewayResponses.
"""

from __future__ import annotations

import base64
import concurrent.futures
import fnmatch
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from filebatch_local import metering
from filebatch_local.lambdas import InvokeResult
from filebatch_local.template import ApiSpec, AuthorizerSpec, RouteSpec

log = logging.getLogger("filebatch_local")

# API Gateway's own limits.
INTEGRATION_TIMEOUT_S = 29.0
MAX_REQUEST_BYTES = 10 * 1024 * 1024

# Status of each gateway response type when the template does not set one.
DEFAULT_STATUS = {
    "UNAUTHORIZED": 401,
    "ACCESS_DENIED": 403,
    "MISSING_AUTHENTICATION_TOKEN": 403,
    "AUTHORIZER_FAILURE": 500,
    "AUTHORIZER_CONFIGURATION_ERROR": 500,
    "INTEGRATION_FAILURE": 504,
    "INTEGRATION_TIMEOUT": 504,
    "REQUEST_TOO_LARGE": 413,
    "BAD_REQUEST_BODY": 400,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "INVALID_API_KEY": 403,
    "DEFAULT_4XX": 400,
    "DEFAULT_5XX": 500,
}


@dataclass(frozen=True)
class Route:
    spec: RouteSpec
    api: ApiSpec
    pattern: re.Pattern[str]
    specificity: tuple[int, int]


def _compile(path: str) -> tuple[re.Pattern[str], tuple[int, int]]:
    parts, literal, greedy = [], 0, 0
    for segment in path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            parts.append(f"(?P<{segment[1:-2]}>.+)")
            greedy += 1
        elif segment.startswith("{") and segment.endswith("}"):
            parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(segment))
            literal += 1
    # Literal segments win over parameters, and greedy {proxy+} paths come last (as in API Gateway).
    return re.compile("^/" + "/".join(parts) + "/?$"), (literal, -greedy)


def policy_allows(policy: dict[str, Any], method_arn: str) -> tuple[bool, bool]:
    """(allowed, explicitly denied) for execute-api:Invoke on method_arn."""
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    allowed = denied = False
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", a) for a in actions):
            continue
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        # IAM wildcards: * any run of characters (slashes included), ? one character.
        if not any(fnmatch.fnmatchcase(method_arn, r.replace("[", "[[]")) for r in resources):
            continue
        effect = str(statement.get("Effect", "")).lower()
        denied |= effect == "deny"
        allowed |= effect == "allow"
    return allowed and not denied, denied


class _Server(ThreadingHTTPServer):
    # Clients connect many at once (bursts, fuzzers, parallel uploads of the SDK): with
    # socketserver's backlog of 5, connections beyond it wait for a SYN retransmit (1 s and more).
    request_queue_size = 128


class GatewayError(Exception):
    def __init__(self, response_type: str, message: str | None, status: int | None = None) -> None:
        super().__init__(message)
        self.response_type = response_type
        self.message = message
        self.status = status


@dataclass
class _CachedAuth:
    expires: float
    principal_id: str
    policy: dict[str, Any]
    context: dict[str, Any]
    usage_identifier_key: str | None


class Authorized(NamedTuple):
    # requestContext.authorizer (None: the route has no authorizer).
    context: dict[str, Any] | None
    # The authorizer's usageIdentifierKey: the API key when the Api's key source is AUTHORIZER.
    usage_identifier_key: str | None


# ------------------------------------------------------------------------------ usage plans
@dataclass(frozen=True)
class UsageKey:
    """An enabled API key in a usage plan of the stage, with that plan's limits."""

    key_id: str
    value: str
    usage_plan_id: str
    rate_limit: float | None  # tokens refilled per second (None: no throttle)
    burst_limit: int | None  # bucket capacity
    quota_limit: int | None  # requests per quota period (None: no quota)
    quota_period: str | None  # DAY, WEEK or MONTH


def stage_usage_keys(client: Any, *, api_id: str, stage: str) -> Callable[[], Iterator[UsageKey]]:
    """The keys of the usage plans attached to the API's stage, read from API Gateway (moto's) as
    they are when called: keys are created at run time (`LocalStack.create_api_key`)."""

    def items(operation: str, **parameters: Any) -> Iterator[dict[str, Any]]:
        for page in client.get_paginator(operation).paginate(**parameters):
            yield from page.get("items", [])

    def fetch() -> Iterator[UsageKey]:
        enabled = {key["id"] for key in items("get_api_keys") if key.get("enabled")}
        for plan in items("get_usage_plans"):
            if not any(
                s.get("apiId") == api_id and s.get("stage") == stage for s in plan.get("apiStages") or []
            ):
                continue
            throttle, quota = plan.get("throttle") or {}, plan.get("quota") or {}
            for key in items("get_usage_plan_keys", usagePlanId=plan["id"]):
                if key["id"] in enabled and key.get("type", "API_KEY") == "API_KEY":
                    yield UsageKey(
                        key_id=key["id"],
                        value=key["value"],
                        usage_plan_id=plan["id"],
                        rate_limit=float(throttle["rateLimit"]) if "rateLimit" in throttle else None,
                        burst_limit=int(throttle["burstLimit"]) if "burstLimit" in throttle else None,
                        quota_limit=int(quota["limit"]) if "limit" in quota else None,
                        quota_period=str(quota.get("period", "MONTH")).upper() if quota else None,
                    )

    return fetch


class UsagePlanMeter:
    """API Gateway's usage plans on one API stage, for the methods that require an API key.

    A key that is in no usage plan of the stage (or disabled, or absent) is refused
    (INVALID_API_KEY). A key's plan is enforced as API Gateway does, per key: a token bucket
    holding BurstLimit tokens, refilled at RateLimit per second, one token per request (THROTTLED
    when empty); and a request count per quota period (UTC day, week from Sunday, or calendar
    month), QUOTA_EXCEEDED once it reaches the limit. Refused requests use no quota.

    Which keys are in which plan is read through `fetch` and cached; a key not in the cache, or a
    cache older than `max_age_s`, is read again (so removed keys stop working within that time).
    `clock` (epoch seconds) drives buckets and quota periods, so tests can move time.
    """

    def __init__(
        self,
        fetch: Callable[[], Iterable[UsageKey]],
        *,
        clock: Callable[[], float] = time.time,
        max_age_s: float = 1.0,
    ) -> None:
        self._fetch = fetch
        self.clock = clock
        self.max_age_s = max_age_s
        self._keys: dict[str, UsageKey] = {}
        self._fetched_at = float("-inf")  # time.monotonic() when the last read started
        self._fetch_lock = threading.Lock()
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # → (tokens, at)
        self._counts: dict[tuple[str, str, str], int] = {}

    def admit(self, value: str | None) -> UsageKey:
        """The key the request is metered under, or GatewayError as API Gateway answers it."""
        key = self.find(value) if value else None
        if key is None:
            raise GatewayError("INVALID_API_KEY", "Forbidden")
        now = self.clock()
        with self._lock:
            counter: tuple[str, str, str] | None = None
            if key.quota_limit is not None:
                counter = (key.usage_plan_id, key.key_id, _quota_period(key.quota_period, now))
                if self._counts.get(counter, 0) >= key.quota_limit:
                    raise GatewayError("QUOTA_EXCEEDED", "Limit Exceeded")
            if key.rate_limit is not None or key.burst_limit is not None:
                rate = key.rate_limit or 0.0
                capacity = float(key.burst_limit if key.burst_limit is not None else max(1.0, rate))
                bucket = (key.usage_plan_id, key.key_id)
                tokens, at = self._buckets.get(bucket, (capacity, now))
                tokens = min(capacity, tokens + max(0.0, now - at) * rate)
                if tokens < 1:
                    self._buckets[bucket] = (tokens, now)
                    raise GatewayError("THROTTLED", "Too Many Requests")
                self._buckets[bucket] = (tokens - 1, now)
            if counter is not None:
                self._counts[counter] = self._counts.get(counter, 0) + 1
        return key

    def find(self, value: str) -> UsageKey | None:
        asked = time.monotonic()
        key = self._keys.get(value)
        if key is not None and asked - self._fetched_at < self.max_age_s:
            return key
        with self._fetch_lock:
            if self._fetched_at < asked:  # no read of the keys started since this request asked
                started = time.monotonic()
                self._keys = {k.value: k for k in self._fetch()}
                self._fetched_at = started
        return self._keys.get(value)


def _quota_period(period: str | None, now: float) -> str:
    day = datetime.fromtimestamp(now, UTC).date()
    if period == "DAY":
        return day.isoformat()
    if period == "WEEK":
        return (day - timedelta(days=(day.weekday() + 1) % 7)).isoformat()
    return f"{day.year:04d}-{day.month:02d}"


class ApiGateway:
    def __init__(
        self,
        apis: dict[str, ApiSpec],
        routes: list[RouteSpec],
        invoke: Callable[[str, Any], InvokeResult],
        *,
        region: str,
        account_id: str,
        port: int = 3000,
        host: str = "127.0.0.1",
        documents: dict[str, Callable[[], tuple[str, bytes]]] | None = None,
        usage_plans: Mapping[str, UsagePlanMeter] | None = None,
    ) -> None:
        self.apis = apis
        # By Api logical id: the usage plans of its stage. A route that requires an API key on an
        # Api without a meter refuses every request, as a stage without usage plans does.
        self.usage_plans = dict(usage_plans or {})
        # Paths served as they are, without authorization (GET): the published contract.
        self.documents = dict(documents or {})
        self.region = region
        self.account_id = account_id
        self._invoke = invoke
        compiled = []
        for spec in routes:
            pattern, specificity = _compile(spec.path)
            compiled.append(Route(spec, apis[spec.api_logical_id], pattern, specificity))
        self.routes = sorted(compiled, key=lambda r: r.specificity, reverse=True)
        self._auth_cache: dict[tuple[str, str, str], _CachedAuth] = {}
        self._auth_lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=64, thread_name_prefix="api-invoke"
        )
        self._host = host
        self._server = _Server((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> None:
        # A short poll interval: shutdown() waits for it.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- routing --------------------------------------------------------------------------
    def match(self, method: str, path: str) -> tuple[Route, dict[str, str], str] | None:
        """The route for a request, its path parameters, and the path without the stage."""
        candidates = [path]
        for api in self.apis.values():
            prefix = f"/{api.stage}"
            if path == prefix or path.startswith(prefix + "/"):
                candidates.append(path[len(prefix) :] or "/")
        for candidate in candidates:
            for route in self.routes:
                found = route.pattern.match(candidate)
                if found and route.spec.method in (method, "ANY"):
                    return route, {k: unquote(v) for k, v in found.groupdict().items()}, candidate
        return None

    # -- gateway responses ----------------------------------------------------------------
    def gateway_response(self, api: ApiSpec | None, error: GatewayError) -> tuple[int, dict[str, str], bytes]:
        responses = api.gateway_responses if api else {}
        default_status = error.status or DEFAULT_STATUS.get(error.response_type, 500)
        family = "DEFAULT_5XX" if default_status >= 500 else "DEFAULT_4XX"
        config = responses.get(error.response_type) or responses.get(family) or {}
        status = int(config.get("StatusCode", default_status))
        templates = config.get("ResponseTemplates") or {}
        template = templates.get("application/json") or next(iter(templates.values()), None)
        message = error.message
        if template is None:
            body = json.dumps({"message": message})
        else:
            body = (
                template.replace("$context.error.messageString", json.dumps(message))
                .replace("$context.error.validationErrorString", message or "")
                .replace("$context.error.message", message or "")
                .replace("$context.error.responseType", error.response_type)
            )
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": _error_type(error.response_type)}
        for name, value in ((config.get("ResponseParameters") or {}).get("Headers") or {}).items():
            headers[name] = str(value).strip("'")
        return status, headers, body.encode()

    # -- authorizer -----------------------------------------------------------------------
    def authorize(self, route: Route, headers: dict[str, str], method_arn: str) -> Authorized:
        """requestContext.authorizer for the request and the authorizer's usageIdentifierKey, or
        GatewayError as API Gateway would answer."""
        if route.spec.authorizer is None:
            return Authorized(None, None)
        authorizer = route.api.authorizers.get(route.spec.authorizer)
        if authorizer is None:
            raise GatewayError("AUTHORIZER_CONFIGURATION_ERROR", None)
        if authorizer.payload_type != "TOKEN":
            raise GatewayError("AUTHORIZER_CONFIGURATION_ERROR", "only TOKEN authorizers are emulated")
        token = _header(headers, authorizer.header)
        # Missing or malformed tokens are refused without invoking the authorizer.
        if not token or (
            authorizer.validation_expression and not re.fullmatch(authorizer.validation_expression, token)
        ):
            raise GatewayError("UNAUTHORIZED", "Unauthorized")
        cached = self._cached(route.api, authorizer, token, method_arn)
        allowed, denied = policy_allows(cached.policy, method_arn)
        if not allowed:
            message = "User is not authorized to access this resource"
            raise GatewayError("ACCESS_DENIED", message + (" with an explicit deny" if denied else ""))
        context = {k: _context_value(v) for k, v in cached.context.items()}
        return Authorized(
            {"principalId": cached.principal_id, **context, "integrationLatency": 0},
            cached.usage_identifier_key,
        )

    def meter(self, route: Route, headers: dict[str, str], authorized: Authorized) -> UsageKey | None:
        """For a route that requires an API key: the key, admitted by its usage plan on this stage
        (after the authorizer, before body validation, as API Gateway orders them)."""
        if not route.spec.api_key_required:
            return None
        meter = self.usage_plans.get(route.api.logical_id)
        if route.api.api_key_source == "AUTHORIZER":
            value = authorized.usage_identifier_key
        else:
            value = _header(headers, "x-api-key")
        if meter is None:
            raise GatewayError("INVALID_API_KEY", "Forbidden")
        return meter.admit(value)

    def _cached(self, api: ApiSpec, authorizer: AuthorizerSpec, token: str, method_arn: str) -> _CachedAuth:
        # The policy is cached per token for ReauthorizeEvery seconds and then applies to every
        # route of the API, exactly like API Gateway's authorizer cache.
        key = (api.logical_id, authorizer.name, token)
        with self._auth_lock:
            cached = self._auth_cache.get(key)
            if cached and cached.expires > time.monotonic():
                return cached
        result = self._invoke(
            authorizer.function_logical_id,
            {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn},
        )
        payload = result.payload
        if result.throttled:
            raise GatewayError("AUTHORIZER_FAILURE", None)
        if result.function_error:
            if isinstance(payload, dict) and payload.get("errorMessage") == "Unauthorized":
                raise GatewayError("UNAUTHORIZED", "Unauthorized")
            raise GatewayError("AUTHORIZER_FAILURE", None)
        if (
            not isinstance(payload, dict)
            or "principalId" not in payload
            or not isinstance(payload.get("policyDocument"), dict)
            or not all(
                isinstance(v, str | int | float | bool) for v in (payload.get("context") or {}).values()
            )
            or not isinstance(payload.get("usageIdentifierKey", ""), str)
        ):
            raise GatewayError("AUTHORIZER_CONFIGURATION_ERROR", None)
        cached = _CachedAuth(
            expires=time.monotonic() + authorizer.ttl_seconds,
            principal_id=str(payload["principalId"]),
            policy=payload["policyDocument"],
            context=dict(payload.get("context") or {}),
            usage_identifier_key=payload.get("usageIdentifierKey"),
        )
        if authorizer.ttl_seconds > 0:
            with self._auth_lock:
                self._auth_cache[key] = cached
        return cached

    # -- requests -------------------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        metering.record_api_request()
        request_id = str(uuid.uuid4())
        split = urlsplit(raw_path)
        path = unquote(split.path) or "/"
        if method in ("GET", "HEAD") and path in self.documents:
            content_type, document = self.documents[path]()
            return 200, {"Content-Type": content_type}, document
        matched = self.match(method, path)
        if matched is None:
            api = next(iter(self.apis.values()), None)
            return self.gateway_response(
                api, GatewayError("MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token")
            )
        route, path_parameters, resource_path = matched
        api = route.api
        single_headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for name, value in headers:
            single_headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        try:
            if len(body) > MAX_REQUEST_BYTES:
                raise GatewayError("REQUEST_TOO_LARGE", "Request Too Long")
            method_arn = (
                f"arn:aws:execute-api:{self.region}:{self.account_id}:{api.api_id}/{api.stage}/{method}"
                f"{resource_path}"
            )
            authorized = self.authorize(route, single_headers, method_arn)
            usage_key = self.meter(route, single_headers, authorized)
            # After the authorizer, before the integration, as API Gateway orders them.
            validate_body(route, single_headers, body)
            event = self._proxy_event(
                route,
                method,
                resource_path,
                split.query,
                single_headers,
                multi_headers,
                path_parameters,
                body,
                source_ip,
                request_id,
                authorized.context,
                usage_key,
            )
            return self._integrate(route, event, request_id)
        except GatewayError as error:
            return self.gateway_response(api, error)

    def _proxy_event(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        multi_headers: dict[str, list[str]],
        path_parameters: dict[str, str],
        body: bytes,
        source_ip: str,
        request_id: str,
        authorizer: dict[str, Any] | None,
        usage_key: UsageKey | None = None,
    ) -> dict[str, Any]:
        api = route.api
        query_multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            query_multi.setdefault(name, []).append(value)
        content_type = _header(headers, "content-type") or ""
        binary = any(fnmatch.fnmatch(content_type.split(";")[0].strip(), t) for t in api.binary_media_types)
        now = datetime.now(UTC)
        request_context: dict[str, Any] = {
            "resourceId": api.api_id[:6],
            "resourcePath": route.spec.path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{api.stage}{path}",
            "accountId": self.account_id,
            "protocol": "HTTP/1.1",
            "stage": api.stage,
            "domainPrefix": api.api_id,
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": _header(headers, "user-agent"),
                "user": None,
            },
            "domainName": f"{api.api_id}.execute-api.{self.region}.amazonaws.com",
            "apiId": api.api_id,
        }
        if authorizer is not None:
            request_context["authorizer"] = authorizer
        if usage_key is not None:
            # $context.identity.apiKey / apiKeyId: set for methods that require an API key.
            request_context["identity"]["apiKey"] = usage_key.value
            request_context["identity"]["apiKeyId"] = usage_key.key_id
        return {
            "resource": route.spec.path,
            "path": path,
            "httpMethod": method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {k: v[-1] for k, v in query_multi.items()} or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": request_context,
            "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace"))
            if body
            else None,
            "isBase64Encoded": bool(binary and body),
        }

    def _integrate(
        self, route: Route, event: dict[str, Any], request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        future = self._executor.submit(self._invoke, route.spec.function_logical_id, event)
        try:
            result = future.result(timeout=INTEGRATION_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            raise GatewayError("INTEGRATION_TIMEOUT", "Endpoint request timed out") from None
        if result.throttled:
            # API Gateway does not pass Lambda's 429 on: a proxy integration that was throttled
            # answers 500 "Internal server error".
            log.warning("%s: throttled (reserved concurrency in use)", route.spec.function_logical_id)
            raise GatewayError("DEFAULT_5XX", "Internal server error", status=500)
        response = result.payload if not result.function_error else None
        if not _valid_proxy_response(response):
            # Unhandled error or malformed proxy response: API Gateway answers 502.
            log.warning(
                "%s: %s",
                route.spec.function_logical_id,
                "function error" if result.function_error else "malformed Lambda proxy response",
            )
            raise GatewayError("DEFAULT_5XX", "Internal server error", status=502)
        assert isinstance(response, dict)
        headers: dict[str, str] = {}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(str(v) for v in values)
        for name, value in (response.get("headers") or {}).items():
            headers[name] = str(value)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        headers["x-amzn-RequestId"] = request_id
        body = response.get("body") or ""
        data = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()
        return int(response.get("statusCode", 200)), headers, data

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "filebatch-local-apigateway"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, headers, data = gateway.handle(
                        self.command, self.path, list(self.headers.items()), body, self.client_address[0]
                    )
                except Exception:
                    log.exception("local API Gateway error")
                    status, headers, data = gateway.gateway_response(
                        None, GatewayError("DEFAULT_5XX", "Internal server error")
                    )
                self.send_response(
                    status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
                )
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

            def __getattr__(self, name: str) -> Any:
                # Any other method (FOO, PROPFIND...) reaches the gateway too, which answers it as
                # API Gateway does (no such route: a JSON gateway response), not http.server's HTML 501.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("api %s - %s", self.address_string(), format % args)

        return Handler


def validate_body(route: Route, headers: dict[str, str], body: bytes) -> None:
    """The route's request model (RequestModel with ValidateBody), applied as API Gateway applies it:
    to JSON bodies (the model is mapped to application/json); BAD_REQUEST_BODY when it fails."""
    if route.spec.request_model is None:
        return
    content_type = (_header(headers, "Content-Type") or "application/json").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return  # no model for this content type: passed through, the function answers it
    schema = route.api.models.get(route.spec.request_model)
    if schema is None:
        raise GatewayError("DEFAULT_5XX", f"model {route.spec.request_model} is not defined")
    try:
        document = json.loads(body or b"null")
    except (ValueError, RecursionError):
        raise GatewayError("BAD_REQUEST_BODY", "[Invalid request body]") from None
    import jsonschema

    problems = sorted(jsonschema.Draft4Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    if problems:
        # validationErrorString is placed inside a JSON string by the gateway response template.
        shown = "; ".join(f"{'/'.join(map(str, p.path)) or 'body'}: {p.message}" for p in problems[:5])
        raise GatewayError("BAD_REQUEST_BODY", "[" + shown.replace("\\", "/").replace('"', "'")[:1000] + "]")


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _context_value(value: Any) -> str:
    # REST APIs hand authorizer context values to the integration as strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error_type(response_type: str) -> str:
    return {
        "UNAUTHORIZED": "UnauthorizedException",
        "ACCESS_DENIED": "AccessDeniedException",
        "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationTokenException",
        "AUTHORIZER_FAILURE": "AuthorizerFailureException",
        "AUTHORIZER_CONFIGURATION_ERROR": "AuthorizerConfigurationException",
        "INVALID_API_KEY": "ForbiddenException",
        "THROTTLED": "TooManyRequestsException",
        "QUOTA_EXCEEDED": "LimitExceededException",
    }.get(
        response_type,
        "InternalServerErrorException" if response_type == "DEFAULT_5XX" else "BadRequestException",
    )


def _valid_proxy_response(response: Any) -> bool:
    if not isinstance(response, dict):
        return False
    try:
        int(response.get("statusCode", 200))
    except (TypeError, ValueError):
        return False
    body = response.get("body")
    return (body is None or isinstance(body, str)) and all(
        k in {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded", "cookies"}
        for k in response
    )
