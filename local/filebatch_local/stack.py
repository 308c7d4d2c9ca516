"""The whole stack on localhost, built from template.yaml: moto (in-process) for AWS services, the
real handlers in worker processes, SQS event sources, and the REST API with its authorizer."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3

from filebatch_local.api import ApiGateway, UsagePlanMeter, stage_usage_keys
from filebatch_local.concurrency import environments_ahead, interpreter_connections
from filebatch_local.events import ScheduledEvents, SqsEventSource
from filebatch_local.lambdas import (
    DEFAULT_MAX_WORKERS,
    CrashRule,
    InvokeResult,
    LambdaRuntime,
    LatencyRule,
    install_lambda_dispatch,
)
from filebatch_local.provision import (
    MotoServer,
    Provisioner,
    client,
    install_moto_patches,
    size_interpreter_connection_pool,
)
from filebatch_local.template import ApiSpec, Template, TemplateError, load_template

log = logging.getLogger("filebatch_local")

LOCAL_TENANT = "local"
# The plan of the key the stack issues for itself (demo, `make up`, e2e tests, schemathesis): no
# quotas, and a bucket large enough for a fuzzer creating batches back to back.
LOCAL_PLAN = "enterprise"
# The vendored OpenAPI renderer behind the /docs page (no CDN).
REDOC = Path(__file__).with_name("vendor") / "redoc"
# What this deployment sets unlike the template's defaults (overrides given to the stack win): webhook
# receivers on this machine (loopback http URLs) may be called, which a stack on AWS refuses.
LOCAL_PARAMETER_OVERRIDES = {"WebhookAllowLoopback": "true"}


class LocalStack:
    def __init__(
        self,
        project_root: Path,
        api_port: int = 3000,
        parameter_overrides: dict[str, str] | None = None,
        state_dir: Path | None = None,
        *,
        template_name: str = "template.yaml",
        max_workers: int = DEFAULT_MAX_WORKERS,
        verbose: bool = False,
        issue_api_key: bool = True,
        api_key_plan: str = LOCAL_PLAN,
        prewarm: bool = True,
    ) -> None:
        self.project_root = Path(project_root).resolve()
        self.template_path = self.project_root / template_name
        self.api_port = api_port
        self.parameter_overrides = self._local_defaults() | dict(parameter_overrides or {})
        self.state_dir = Path(state_dir) if state_dir else self.project_root / ".local"
        self.max_workers = max_workers
        self.verbose = verbose
        self.issue_api_key = issue_api_key
        self.api_key_plan = api_key_plan
        self.prewarm = prewarm

        self.template: Template | None = None
        self.api_url = ""
        self.moto_endpoint = ""
        self.api_key: str | None = None
        self.physical_ids: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self._moto: MotoServer | None = None
        self._runtime: LambdaRuntime | None = None
        self._api: ApiGateway | None = None
        self._sources: list[SqsEventSource] = []
        self._schedules: list[ScheduledEvents] = []
        self._wrote_stack_file = False
        # Environments started ahead per function, from the template's concurrency settings.
        self.environments_ahead: dict[str, int] = {}

    def _local_defaults(self) -> dict[str, str]:
        # Only the parameters the template declares (a test template may not have them).
        try:
            declared = load_template(self.template_path).get("Parameters") or {}
        except (OSError, TemplateError):  # reported by start(), which parses the template first
            return {}
        return {k: v for k, v in LOCAL_PARAMETER_OVERRIDES.items() if k in declared}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        started = time.monotonic()
        # Parse first: a template the resolver cannot evaluate fails before anything starts.
        Template(self.template_path, self.parameter_overrides)
        try:
            install_moto_patches()
            self._moto = MotoServer()
            self.moto_endpoint = self._moto.start()
            template = Template(self.template_path, self.parameter_overrides, sqs_endpoint=self.moto_endpoint)
            self.template = template
            definitions = [machine.definition for machine in template.state_machines().values()]
            size_interpreter_connection_pool(interpreter_connections(definitions))

            provisioner = Provisioner(template, self.moto_endpoint)
            provisioner.provision()
            self.skipped = provisioner.skipped

            self._runtime = LambdaRuntime(
                template.functions(),
                self.moto_endpoint,
                template.region,
                self.state_dir / "logs",
                max_workers=self.max_workers,
                echo_logs=self.verbose,
            )
            install_lambda_dispatch(self._runtime)
            runtime = self._runtime
            self.environments_ahead = environments_ahead(
                definitions,
                lambda name: pool.spec.logical_id if (pool := runtime.pool_for(name)) else None,
                {spec.function_logical_id: spec.maximum_concurrency for spec in template.sqs_sources()},
                {logical_id: spec.reserved_concurrency for logical_id, spec in template.functions().items()},
                cap=self.max_workers,
            )

            routes = template.routes()
            if routes:
                apis = template.apis()
                self._api = ApiGateway(
                    apis,
                    routes,
                    self._runtime.invoke,
                    region=template.region,
                    account_id=template.account_id,
                    port=self.api_port,
                    documents={
                        "/openapi.json": self._openapi_document,
                        "/docs": lambda: ("text/html; charset=utf-8", (REDOC / "docs.html").read_bytes()),
                        "/docs/redoc.standalone.js": lambda: (
                            "text/javascript; charset=utf-8",
                            (REDOC / "redoc.standalone.js").read_bytes(),
                        ),
                    },
                    # Each stage's usage plans, as provisioned from the template into moto; keys
                    # are read from there (they are created at run time, by create_api_key).
                    usage_plans={
                        logical_id: UsagePlanMeter(
                            stage_usage_keys(self.client("apigateway"), api_id=api.api_id, stage=api.stage)
                        )
                        for logical_id, api in apis.items()
                    },
                )
                self._api.start()
                self.api_url = self._api.url

            for spec in template.sqs_sources():
                source = SqsEventSource(
                    spec,
                    template.ref(spec.queue_logical_id),
                    self._runtime.invoke,
                    lambda: client("sqs", self.moto_endpoint, template.region),
                    template.region,
                    self.max_workers,
                )
                source.start()
                self._sources.append(source)
            for schedule_spec in template.schedules():
                schedule = ScheduledEvents(
                    schedule_spec,
                    self._runtime.invoke,
                    account_id=template.account_id,
                    region=template.region,
                )
                schedule.start()
                self._schedules.append(schedule)
            for event in template.unsupported_events():
                log.warning("event source not emulated locally: %s", event)

            self.physical_ids = template.physical_ids()
            self.outputs = self._local_outputs(template)
            if self.issue_api_key and self._api is not None:
                self.api_key = self.create_api_key(LOCAL_TENANT, plan=self.api_key_plan)
            self._write_stack_file()
            if self.prewarm:
                # Environments start in the background (two at a time): as many per function as
                # the template lets run at once (its share of a Map's MaxConcurrency, its event
                # source's MaximumConcurrency, within its reserved concurrency), one for the others,
                # so that requests do not pay cold starts of a second or more each. Last, so that
                # they do not compete with the start itself for the CPU.
                self._runtime.prewarm(self.environments_ahead)
        except BaseException:
            self.stop()
            raise
        log.info("local stack up in %.1f s", time.monotonic() - started)
        return self

    def stop(self) -> None:
        """Stop everything that was started, in reverse order; safe to call twice."""
        if self._wrote_stack_file:
            # The URLs and the key are dead once the stack is: tools must not find them.
            self.stack_file.unlink(missing_ok=True)
            self._wrote_stack_file = False
        for schedule in self._schedules:
            schedule.stop()
        self._schedules = []
        for source in self._sources:
            source.request_stop()  # all pollers wind down together (each is in a receive wait)
        for source in self._sources:
            source.stop()
        self._sources = []
        if self._api is not None:
            self._api.stop()
            self._api = None
        if self._runtime is not None:
            install_lambda_dispatch(None)
            self._runtime.close()
            self._runtime = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- for tests and tools ----------------------------------------------------------------
    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"

    def wait_warm(self, timeout_s: float = 300.0) -> bool:
        """Wait until the environments started ahead are up (benchmarks: no cold start in the
        measurement); True if all are."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return self._runtime.wait_warm(self.environments_ahead, timeout_s)

    def function_env(self, logical_id: str) -> dict[str, str]:
        """The exact environment the function's workers run with."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return dict(self._runtime.environments[logical_id])

    def invoke(self, logical_id: str, event: Any) -> InvokeResult:
        """A direct synchronous invoke through the function's worker pool."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return self._runtime.invoke(logical_id, event)

    def inject_crashes(self, logical_id: str, fragment: str, times: int) -> CrashRule:
        """Fault injection: the function's environment is SIGKILLed mid-invocation for the next
        `times` invocations whose event contains `fragment`. The returned rule counts the kills."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return self._runtime.pools[logical_id].inject_crashes(fragment, times)

    def inject_latency(self, logical_id: str, fragment: str, seconds: float) -> LatencyRule:
        """Fault injection: every invocation of the function whose event contains `fragment` holds
        its environment `seconds` longer, as a slow provider would. The returned rule counts them."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return self._runtime.pools[logical_id].inject_latency(fragment, seconds)

    def peak_memory_used_mb(self, logical_id: str) -> int:
        """The highest Max Memory Used (peak RSS, MB) any environment of the function reported."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return self._runtime.pools[logical_id].peak_memory_used_mb

    def peak_concurrent_executions(self, logical_id: str) -> int:
        """The most invocations of the function that ran at once (CloudWatch's ConcurrentExecutions,
        Maximum): never above its ReservedConcurrentExecutions."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return self._runtime.pools[logical_id].peak_concurrent_executions

    def cpu_seconds_by_function(self) -> dict[str, tuple[int, float]]:
        """Per function: environments started so far and the CPU seconds they used (benchmarks)."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return {
            logical_id: (pool.environments_started, pool.cpu_seconds())
            for logical_id, pool in self._runtime.pools.items()
        }

    def throttles(self, logical_id: str) -> int:
        """How many invocations of the function were refused for its reserved concurrency
        (CloudWatch's Throttles, Sum)."""
        if self._runtime is None:
            raise RuntimeError("the local stack is not started")
        return self._runtime.pools[logical_id].throttles

    def client(self, service: str) -> Any:
        """A boto3 client for the local endpoint (dummy credentials, the template's region)."""
        assert self.template is not None, "the local stack is not started"
        return client(service, self.moto_endpoint, self.template.region)

    def create_api_key(self, tenant_id: str, plan: str | None = None) -> str:
        """Issue an API key on a plan (default: the stack's own, `api_key_plan`) with the project's
        own code: its hash into the table the authorizer reads, its usage key into the usage plan
        of that plan on the API's stage (moto's API Gateway, where the local gateway reads it)."""
        # Imported lazily: the shared package is the lead's, and tests may stand in for it.
        from filebatch.adapters.apigateway import ApiGatewayUsageKeys
        from filebatch.adapters.dynamodb import DynamoBatchRepository
        from filebatch.services.auth import issue_api_key

        assert self.template is not None, "the local stack is not started"
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - dummy credentials for moto
            region_name=self.template.region,
        )
        table_name, api = self._authorizer_table_and_api()
        repository = DynamoBatchRepository(
            session.resource("dynamodb", endpoint_url=self.moto_endpoint).Table(table_name)
        )
        usage_keys = ApiGatewayUsageKeys(self.client("apigateway"), api_id=api.api_id, stage=api.stage)
        return str(
            issue_api_key(
                repository, usage_keys, tenant_id, plan=plan or self.api_key_plan, now=datetime.now(UTC)
            )
        )

    @functools.cache  # noqa: B019 - one stack, one document, built on first request
    def _openapi_document(self) -> tuple[str, bytes]:
        from filebatch_local.openapi import build_document, render

        return "application/json", render(build_document(self.template_path)).encode()

    def _authorizer_table_and_api(self) -> tuple[str, ApiSpec]:
        # The table the API's authorizer function is configured with (TABLE_NAME in its env), and
        # that API (whose stage the keys' usage plans are attached to).
        assert self.template is not None and self._runtime is not None
        for api in self.template.apis().values():
            for authorizer in api.authorizers.values():
                env = self._runtime.environments[authorizer.function_logical_id]
                if env.get("TABLE_NAME"):
                    return env["TABLE_NAME"], api
        raise RuntimeError("no authorizer function with a TABLE_NAME in the template")

    def _local_outputs(self, template: Template) -> dict[str, Any]:
        # The API's AWS URL (https://<id>.execute-api.<region>.amazonaws.com/<stage>) is served
        # locally at <api_url>/<stage>: outputs point there so clients can use them as they are.
        outputs = template.outputs()
        if not self.api_url:
            return outputs
        apis = template.apis()
        for name, value in outputs.items():
            if not isinstance(value, str):
                continue
            for api in apis.values():
                value = re.sub(
                    rf"https://{api.api_id}\.execute-api\.[a-z0-9-]+\.amazonaws\.com",
                    self.api_url,
                    value,
                )
            outputs[name] = value
        return outputs

    def _write_stack_file(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        document = {
            "api_url": self.api_url,
            "api_key": self.api_key,
            "moto_endpoint": self.moto_endpoint,
            "outputs": self.outputs,
        }
        # Created private (it holds an API key), then moved into place whole.
        partial = self.stack_file.with_suffix(".json.tmp")
        partial.unlink(missing_ok=True)
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as stream:
            stream.write(json.dumps(document, indent=2) + "\n")
        partial.replace(self.stack_file)
        self._wrote_stack_file = True
