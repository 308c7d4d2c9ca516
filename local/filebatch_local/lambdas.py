"""Run the real handlers the way Lambda does: in worker subprocesses (execution environments) with
the environment the template gives each function, a pool per function that grows with concurrent
invocations, timeouts, crashes replaced, reserved concurrency enforced (the excess throttled), and
Lambda's error payloads.

moto's Lambda backend is patched to dispatch here, so Step Functions Task states (and any boto3
`lambda.invoke` against the moto endpoint) run the real code.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from filebatch_local import metering
from filebatch_local.template import FunctionSpec

WORKER_SCRIPT = Path(__file__).with_name("_worker.py")
DEFAULT_MAX_WORKERS = 16
# Lambda allows 10 s of init; local imports on a busy 2-core machine get more slack.
INIT_TIMEOUT_S = 30.0


# What Lambda's Invoke API answers (HTTP 429, TooManyRequestsException) when a function's reserved
# concurrency is all in use: the invocation never starts.
THROTTLED_ERROR_CODE = "TooManyRequestsException"
THROTTLED_BODY = {
    "Type": "User",
    "message": "Rate Exceeded.",
    "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
}


@dataclass(frozen=True)
class InvokeResult:
    """What Lambda's Invoke returns: the payload (JSON text) and whether it is a function error."""

    payload_json: str
    function_error: bool
    duration_ms: float = 0.0
    # The environment's peak RSS after the invocation (Lambda's "Max Memory Used"); None when the
    # environment died or never started.
    max_memory_used_mb: int | None = None
    # Refused before it ran (reserved concurrency in use): not a function error but Invoke's own
    # 429 TooManyRequestsException, whose body is `payload_json`.
    throttled: bool = False

    @property
    def payload(self) -> Any:
        return json.loads(self.payload_json)


def lambda_service_environment(spec: FunctionSpec, region: str) -> dict[str, str]:
    """The template's variables plus what the Lambda service sets in every environment of the
    function (its role's credentials and Tracing's X-Ray daemon aside)."""
    env = dict(spec.environment)
    env.update(
        {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": f"{spec.handler_file.stem}.{spec.handler_attr}",
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
    )
    return env


def lambda_environment(spec: FunctionSpec, endpoint_url: str, region: str) -> dict[str, str]:
    """The function's Lambda environment, pointed at the local endpoint."""
    return lambda_service_environment(spec, region) | {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        # boto3 (>= 1.28) sends every client here: the handlers need no code change.
        "AWS_ENDPOINT_URL": endpoint_url,
        # Tracing: Active gives Lambda an X-Ray daemon; locally there is none.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


class LogSink:
    """One function's log file (`.local/logs/<LogicalId>.log`), optionally echoed to the console."""

    def __init__(self, path: Path, label: str, echo: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8", buffering=1)
        self._label = label
        self._echo = echo
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        line = line.rstrip("\n")
        metering.record_log_line(self._label, line)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            if self._echo:
                print(f"[{self._label}] {line}", file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._lock:
            self._file.close()


class WorkerDied(Exception):
    pass


def _exit_reason(returncode: int) -> str:
    """How Lambda words a runtime's exit: "signal: killed" for SIGKILL (e.g. out of memory)."""
    if returncode < 0:
        name = signal.Signals(-returncode).name.removeprefix("SIG").lower()
        return f"signal: {'killed' if name == 'kill' else name}"
    return f"exit status {returncode}"


@dataclass
class CrashRule:
    """Kill the environment running an invocation whose event (as JSON text) contains `fragment`,
    for the next `times` such invocations."""

    fragment: str
    times: int
    crashed: int = 0


@dataclass
class LatencyRule:
    """Hold every invocation whose event (as JSON text) contains `fragment` for `seconds` more, in
    its environment, before the handler runs: a slow provider's call, at no CPU cost. Counts them."""

    fragment: str
    seconds: float
    delayed: int = 0


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process not yet reaped, from /proc (Linux); None without it."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Fields after the command name (which may hold spaces): utime and stime are 14th, 15th.
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Worker:
    """One execution environment (a subprocess) of one function."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], sink: LogSink) -> None:
        self.spec = spec
        self._ready = False
        self._cpu_s_at_exit: float | None = None
        # What init and the last invocation used, as the environment reported it (for metering).
        self.init_usage: dict[str, Any] | None = None
        self.last_usage: dict[str, Any] | None = None
        self.served = False  # has run an invocation (its INIT is then metered)
        self._fd_lock = threading.Lock()
        request_read, self._request_write = os.pipe()
        self._response_read, response_write = os.pipe()
        config = {
            "logical_id": spec.logical_id,
            "function_name": spec.name,
            "function_arn": spec.arn,
            "memory_mb": spec.memory_mb,
            "log_group": spec.log_group,
            "code_dir": str(spec.code_dir),
            "layer_dirs": [str(d) for d in spec.layer_dirs],
            "handler_file": str(spec.handler_file),
            "handler_module": spec.handler_file.stem,
            "handler_attr": spec.handler_attr,
            "request_fd": request_read,
            "response_fd": response_write,
        }
        try:
            # -I: no script dir or PYTHON* variables on the path, so the handler sees only its code
            # and its layers (plus the venv's packages, standing in for the runtime's). Own session:
            # Ctrl-C in the terminal reaches the stack, which then stops the workers itself.
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [sys.executable, "-I", "-u", str(WORKER_SCRIPT), json.dumps(config)],
                env=env,
                cwd=spec.code_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(request_read, response_write),
                start_new_session=True,
            )
        finally:
            os.close(request_read)
            os.close(response_write)
        self._log_thread = threading.Thread(
            target=self._copy_logs,
            args=(self.process.stdout, sink),
            daemon=True,
            name=f"log-{spec.logical_id}",
        )
        self._log_thread.start()

    @staticmethod
    def _copy_logs(stream: IO[bytes], sink: LogSink) -> None:
        for raw in iter(stream.readline, b""):
            sink.write(raw.decode("utf-8", "replace"))
        stream.close()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _receive(self, deadline: float) -> dict[str, Any]:
        header = self._read(4, deadline)
        return dict(json.loads(self._read(struct.unpack(">I", header)[0], deadline)))

    def wait_ready(self, timeout_s: float) -> None:
        """Wait for the end of init (the handler module imported), which Lambda does not count
        against the invocation's Timeout."""
        if not self._ready:
            self.init_usage = self._receive(time.time() + timeout_s).get("usage")
            self._ready = True

    def call(
        self, event: Any, request_id: str, timeout_s: float, *, crash: bool = False
    ) -> tuple[bool, str, int | None]:
        """Run one invocation; with `crash`, the environment is SIGKILLed once the event is handed
        over (fault injection: what an out-of-memory kill or a runtime crash does mid-invocation).
        It is stopped before the event is written, so the kill always lands before the handler has
        done anything: what a crash leaves behind does not depend on how the two processes were
        scheduled."""
        deadline = time.time() + timeout_s
        message = json.dumps(
            {"request_id": request_id, "event": event, "deadline_ms": int(deadline * 1000)}
        ).encode()
        if crash:
            self.process.send_signal(signal.SIGSTOP)
        try:
            os.write(self._request_write, struct.pack(">I", len(message)) + message)
        except OSError as error:
            raise WorkerDied(str(error)) from error
        finally:
            if crash:
                self.process.send_signal(signal.SIGKILL)
        self.last_usage = None
        response = self._receive(deadline)
        self.last_usage = response.get("usage")
        peak = response.get("max_memory_used_mb")
        return bool(response["error"]), str(response["payload"]), int(peak) if peak is not None else None

    def _read(self, size: int, deadline: float) -> bytes:
        data = b""
        while len(data) < size:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise TimeoutError
            try:
                ready, _, _ = select.select([self._response_read], [], [], remaining)
                chunk = os.read(self._response_read, size - len(data)) if ready else None
            except (OSError, ValueError) as error:  # the fd was closed: the worker is gone
                raise WorkerDied(str(error)) from error
            if chunk is None:
                raise TimeoutError
            if not chunk:
                raise WorkerDied(_exit_reason(self.process.wait()))
            data += chunk
        return data

    def _close_fd(self, name: str) -> None:
        # Each fd is closed once: its number may be reused by another open file right after.
        with self._fd_lock:
            fd = getattr(self, name)
            setattr(self, name, -1)
        if fd >= 0:
            os.close(fd)

    def terminate(self) -> None:
        """Kill the process only; a call in progress then sees EOF and reports the crash."""
        if self.process.poll() is None:
            self.process.kill()

    def cpu_seconds(self) -> float:
        """CPU time this environment used (init included), for benchmarks; 0.0 where unknown."""
        if self._cpu_s_at_exit is not None:
            return self._cpu_s_at_exit
        return _process_cpu_seconds(self.process.pid) or 0.0

    def kill(self) -> None:
        self.terminate()
        # Read before the wait reaps the process (its /proc entry goes with it).
        self._cpu_s_at_exit = self.cpu_seconds()
        self.process.wait()
        self._close_fd("_request_write")
        self._close_fd("_response_read")
        self._log_thread.join(timeout=2)

    def ask_to_exit(self) -> None:
        """The worker exits on its own when it reads EOF on its request pipe."""
        self._close_fd("_request_write")

    def stop(self) -> None:
        self.ask_to_exit()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)
        self.kill()


# Starting an environment costs ~1 s of CPU (Python + Powertools + pydantic imports). Starting a
# dozen at once on a 2-core laptop makes every one of them slow, so at most this many start at a
# time, process-wide.
_SPAWN_SLOTS = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))


class SpawnError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class FunctionPool:
    """Execution environments of one function: started as concurrent calls need them (as Lambda
    scales, up to `max_workers`), reused afterwards, replaced when they crash or time out.

    One difference from Lambda, for small machines: a waiting call takes whichever environment is
    free first — one that finished its previous call, or the one started for it — and starts
    that are no longer needed once they get a start slot are skipped. Each environment still runs
    one invocation at a time, as in Lambda.
    """

    def __init__(self, spec: FunctionSpec, env: dict[str, str], sink: LogSink, max_workers: int) -> None:
        self.spec = spec
        self.env = env
        self.sink = sink
        self.max_workers = max_workers
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()
        self._waiting = 0  # calls waiting for an environment
        self._spawning = 0  # environment starts requested and not finished
        self._initialising = 0  # of those, starts past their slot (really initialising)
        self._spawn_errors: list[SpawnError] = []
        self._started: list[Worker] = []  # every environment started, for cpu_seconds
        self._crash_rules: list[CrashRule] = []
        self._latency_rules: list[LatencyRule] = []
        # The highest "Max Memory Used" any of this function's environments reported.
        self.peak_memory_used_mb = 0
        # Lambda's concurrency: invocations admitted and not finished, waiting for an environment
        # (a cold start) included. Over the reservation, an invocation is throttled instead.
        self.reserved_concurrency = spec.reserved_concurrency
        self._in_flight = 0
        self.peak_concurrent_executions = 0  # CloudWatch's ConcurrentExecutions, Maximum
        self.throttles = 0  # CloudWatch's Throttles, Sum
        self._closed = False
        self._condition = threading.Condition()

    def inject_crashes(self, fragment: str, times: int) -> CrashRule:
        """Fault injection: SIGKILL the environment of the next `times` invocations whose event
        contains `fragment` (e.g. a batch id), mid-invocation. Returns the rule, which counts."""
        rule = CrashRule(fragment, times)
        with self._condition:
            self._crash_rules.append(rule)
        return rule

    def inject_latency(self, fragment: str, seconds: float) -> LatencyRule:
        """Fault injection: every invocation whose event contains `fragment` takes `seconds` longer
        (its environment and its concurrency are held meanwhile). Returns the rule, which counts."""
        rule = LatencyRule(fragment, seconds)
        with self._condition:
            self._latency_rules.append(rule)
        return rule

    def _take_latency(self, event: Any) -> float:
        if not self._latency_rules:
            return 0.0
        text = json.dumps(event)
        with self._condition:
            matching = [rule for rule in self._latency_rules if rule.fragment in text]
            for rule in matching:
                rule.delayed += 1
        return sum(rule.seconds for rule in matching)

    def _take_crash(self, event: Any) -> bool:
        if not self._crash_rules:
            return False
        text = json.dumps(event)
        with self._condition:
            for rule in self._crash_rules:
                if rule.crashed < rule.times and rule.fragment in text:
                    rule.crashed += 1
                    return True
        return False

    @property
    def size(self) -> int:
        with self._condition:
            return len(self._workers)

    @property
    def environments_started(self) -> int:
        with self._condition:
            return len(self._started)

    def cpu_seconds(self) -> float:
        """CPU time of every environment this function started (inits included), live or gone."""
        with self._condition:
            started = list(self._started)
        return sum(worker.cpu_seconds() for worker in started)

    def _acquire(self) -> Worker:
        with self._condition:
            self._waiting += 1
            try:
                while True:
                    if self._closed:
                        raise RuntimeError(f"{self.spec.logical_id}: the local stack is stopping")
                    if self._spawn_errors:
                        raise self._spawn_errors.pop(0)
                    while self._idle:
                        worker = self._idle.pop()
                        if worker.alive:
                            return worker
                        self._workers.discard(worker)
                        worker.kill()
                    # One environment on its way per waiting call, within the function's cap.
                    if (
                        self._spawning < self._waiting
                        and len(self._workers) + self._spawning < self.max_workers
                    ):
                        self._spawning += 1
                        threading.Thread(
                            target=self._spawn, name=f"spawn-{self.spec.logical_id}", daemon=True
                        ).start()
                    self._condition.wait()
            finally:
                self._waiting -= 1

    def prewarm(self, count: int = 1) -> None:
        """Start environments ahead of the first calls, up to `count` in all (like provisioned
        concurrency); they start two at a time, process-wide, as any other."""
        with self._condition:
            if self._closed:
                return
            missing = min(count, self.max_workers) - len(self._workers) - self._spawning
            self._spawning += max(0, missing)
        for _ in range(missing):
            threading.Thread(
                target=self._spawn, args=(True,), name=f"warm-{self.spec.logical_id}", daemon=True
            ).start()

    def wait_idle(self, count: int, timeout_s: float) -> bool:
        """Wait until `count` environments (at most max_workers) are started and free, or no start
        is in progress any more (one failed); True if they are."""
        count = min(count, self.max_workers)
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while len(self._idle) < count and self._spawning and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            return len(self._idle) >= count

    def _spawn(self, ahead: bool = False) -> None:
        try:
            with _SPAWN_SLOTS:
                with self._condition:
                    if self._closed or (not ahead and self._waiting <= self._initialising):
                        return  # the calls that asked for it were served by freed environments
                    self._initialising += 1
                worker: Worker | None = None
                try:
                    worker = Worker(self.spec, self.env, self.sink)
                    with self._condition:
                        self._workers.add(worker)
                        self._started.append(worker)
                    worker.wait_ready(INIT_TIMEOUT_S)
                except (OSError, TimeoutError, WorkerDied) as error:
                    failure = (
                        SpawnError("Sandbox.Timedout", f"Init timed out after {INIT_TIMEOUT_S:.0f} seconds")
                        if isinstance(error, TimeoutError)
                        else SpawnError("Runtime.ExitError", f"Runtime exited during init: {error}")
                    )
                    self.sink.write(f"INIT failed: {failure}")
                    with self._condition:
                        if worker is not None:
                            self._workers.discard(worker)
                        if self._waiting and not ahead:
                            self._spawn_errors.append(failure)
                    if worker is not None:
                        worker.kill()
                    return
                finally:
                    with self._condition:
                        self._initialising -= 1
                with self._condition:
                    if not self._closed:
                        self._idle.append(worker)
                        return
                worker.kill()
        finally:
            with self._condition:
                self._spawning -= 1
                self._condition.notify_all()

    def _release(self, worker: Worker, reusable: bool) -> None:
        with self._condition:
            reusable = reusable and worker.alive and not self._closed
            if reusable:
                self._idle.append(worker)
            else:
                self._workers.discard(worker)
            self._condition.notify_all()
        if not reusable:
            worker.kill()

    def _admit(self, wait_for_capacity: bool) -> bool:
        """Count the invocation in, or refuse it as Lambda does when the reservation is in use. An
        asynchronous invocation is not refused: Lambda keeps it queued and tries again, so it waits."""
        with self._condition:
            if self._reservation_in_use():
                self.throttles += 1
                if not wait_for_capacity:
                    return False
                while self._reservation_in_use():
                    self._condition.wait()
            self._in_flight += 1
            self.peak_concurrent_executions = max(self.peak_concurrent_executions, self._in_flight)
            return True

    def _reservation_in_use(self) -> bool:
        # Called with the condition held. A closing pool admits, and then refuses in _acquire.
        reserved = self.reserved_concurrency
        return reserved is not None and self._in_flight >= reserved and not self._closed

    def _leave(self) -> None:
        with self._condition:
            self._in_flight -= 1
            self._condition.notify_all()

    def invoke(
        self, event: Any, request_id: str | None = None, *, wait_for_capacity: bool = False
    ) -> InvokeResult:
        if not self._admit(wait_for_capacity):
            return InvokeResult(json.dumps(THROTTLED_BODY), False, 0.0, throttled=True)
        try:
            return self._run(event, request_id or str(uuid.uuid4()))
        finally:
            self._leave()

    def _run(self, event: Any, request_id: str) -> InvokeResult:
        started = time.monotonic()
        try:
            worker = self._acquire()
        except SpawnError as error:
            return InvokeResult(_runtime_error(error.error_type, str(error)), True, 0.0)
        called = time.monotonic()
        self.sink.write(f"START RequestId: {request_id} Version: $LATEST")
        reusable = False
        max_memory: int | None = None
        usage: dict[str, Any] | None = None
        try:
            delay = self._take_latency(event)
            if delay:
                # Outside the handler, so not counted against its Timeout.
                time.sleep(delay)
            function_error, payload, max_memory = worker.call(
                event, request_id, self.spec.timeout_s, crash=self._take_crash(event)
            )
            usage = worker.last_usage
            reusable = True
        except TimeoutError:
            function_error = True
            payload = _runtime_error(
                "Sandbox.Timedout",
                f"RequestId: {request_id} Error: Task timed out after {self.spec.timeout_s:.2f} seconds",
            )
        except WorkerDied as error:
            function_error = True
            payload = _runtime_error(
                "Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: {error}"
            )
        finally:
            self._release(worker, reusable)
            now = time.monotonic()
            duration_ms = (now - started) * 1000  # what the caller waited, environment start included
            self.sink.write(f"END RequestId: {request_id}")
            # Like Lambda's REPORT: the handler's time, the wait for an environment apart, memory.
            memory = f"\tMemory Size: {self.spec.memory_mb} MB"
            if max_memory is not None:
                memory += f"\tMax Memory Used: {max_memory} MB"
                with self._condition:
                    self.peak_memory_used_mb = max(self.peak_memory_used_mb, max_memory)
            if not worker.served:
                # On Lambda an on-demand environment is started by the invocation it first serves:
                # its INIT is billed then. One started ahead (prewarm) and never used costs nothing.
                worker.served = True
                metering.record_init(self.spec.logical_id, self.spec.memory_mb, worker.init_usage)
            metering.record_invocation(
                self.spec.logical_id, self.spec.memory_mb, (now - called) * 1000, usage
            )
            self.sink.write(
                f"REPORT RequestId: {request_id}\tDuration: {(now - called) * 1000:.2f} ms"
                f"\tWaited for environment: {(called - started) * 1000:.2f} ms{memory}"
            )
        if function_error:
            self.sink.write(f"{request_id}\tfunction error: {payload[:500]}")
        return InvokeResult(payload, function_error, duration_ms, max_memory)

    def close(self) -> list[Worker]:
        """Refuse new calls, kill busy environments, ask idle ones to exit; returns the idle ones
        (the caller waits for them, all pools at once)."""
        with self._condition:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = self._workers - set(idle)
            self._workers = set()
            self._condition.notify_all()
        for worker in busy:
            worker.terminate()  # its invocation returns Runtime.ExitError, then releases it
        for worker in idle:
            worker.ask_to_exit()
        return idle


def _runtime_error(error_type: str, message: str) -> str:
    return json.dumps({"errorType": error_type, "errorMessage": message})


class LambdaRuntime:
    """All functions of the template, by logical id, name and ARN."""

    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        endpoint_url: str,
        region: str,
        log_dir: Path,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        echo_logs: bool = False,
    ) -> None:
        self.pools: dict[str, FunctionPool] = {}
        self.environments: dict[str, dict[str, str]] = {}
        self._by_name: dict[str, FunctionPool] = {}
        for logical_id, spec in functions.items():
            env = lambda_environment(spec, endpoint_url, region)
            sink = LogSink(log_dir / f"{logical_id}.log", logical_id, echo_logs)
            pool = FunctionPool(spec, env, sink, max_workers)
            self.pools[logical_id] = pool
            self.environments[logical_id] = env
            self._by_name[spec.name] = pool
            self._by_name[spec.arn] = pool

    def pool_for(self, function_name_or_arn: str) -> FunctionPool | None:
        # Accepts a name, an ARN, or either with a `:$LATEST` / `:version` qualifier.
        if function_name_or_arn in self._by_name:
            return self._by_name[function_name_or_arn]
        base = function_name_or_arn.rsplit(":", 1)[0]
        return self._by_name.get(base)

    def invoke(self, logical_id: str, event: Any) -> InvokeResult:
        return self.pools[logical_id].invoke(event)

    def prewarm(self, environments: Mapping[str, int] | None = None) -> None:
        """Start environments ahead: `environments[logical_id]` for each function (default 1).
        Every function's first environment is queued for a start slot before any function's
        second, so that no function waits for another's extra environments to serve its first call."""
        for pool in self.pools.values():
            pool.prewarm(1)
        for logical_id, pool in self.pools.items():
            pool.prewarm((environments or {}).get(logical_id, 1))

    def wait_warm(self, environments: Mapping[str, int] | None = None, timeout_s: float = 300.0) -> bool:
        """Wait until the environments `prewarm` asked for are up and free; True if all are."""
        deadline = time.monotonic() + timeout_s
        return all(
            pool.wait_idle((environments or {}).get(logical_id, 1), max(0.0, deadline - time.monotonic()))
            for logical_id, pool in self.pools.items()
        )

    def close(self) -> None:
        exiting = [worker for pool in self.pools.values() for worker in pool.close()]
        for worker in exiting:
            worker.stop()
        for pool in self.pools.values():
            pool.sink.close()


# ------------------------------------------------------------------------------ moto dispatch
_active_runtime: LambdaRuntime | None = None
_original_invoke: Callable[..., Any] | None = None
_patch_lock = threading.Lock()


def _dispatching_invoke(
    self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> Any:
    runtime = _active_runtime
    pool = runtime.pool_for(function_name) if runtime else None
    if pool is None:
        assert _original_invoke is not None
        return _original_invoke(self, function_name, qualifier, body, headers, response_headers)
    text = body.decode() if isinstance(body, bytes) else (body or "")
    event = json.loads(text) if text.strip() else {}
    response_headers["x-amz-executed-version"] = "$LATEST"
    if (headers or {}).get("X-Amz-Invocation-Type") == "Event":
        # Asynchronous invoke: Lambda queues it and answers 202 at once (throttled, it waits).
        threading.Thread(
            target=pool.invoke, args=(event,), kwargs={"wait_for_capacity": True}, daemon=True
        ).start()
        return b""
    result = pool.invoke(event)
    if result.throttled:
        # Invoke's own error, not the function's: HTTP 429 with the error code in x-amzn-ErrorType.
        # Step Functions names it Lambda.<code>, as it does on AWS.
        raise _throttled_error()
    if result.function_error:
        # What makes boto3 report FunctionError, and Step Functions raise the payload's errorType.
        response_headers["x-amz-function-error"] = "Unhandled"
    return result.payload_json.encode()


def _throttled_error() -> Exception:
    from moto.core.exceptions import JsonRESTError

    class TooManyRequestsException(JsonRESTError):
        code = 429

    error = TooManyRequestsException(THROTTLED_ERROR_CODE, str(THROTTLED_BODY["message"]))
    error.description = json.dumps({"__type": THROTTLED_ERROR_CODE, **THROTTLED_BODY})
    return error


def install_lambda_dispatch(runtime: LambdaRuntime | None) -> None:
    """Point moto's (docker-less) Lambda backend at `runtime`; None restores canned results."""
    global _active_runtime, _original_invoke
    from moto.awslambda_simple.models import LambdaSimpleBackend

    with _patch_lock:
        if _original_invoke is None:
            _original_invoke = LambdaSimpleBackend.invoke
            LambdaSimpleBackend.invoke = _dispatching_invoke  # type: ignore[method-assign]
        _active_runtime = runtime
