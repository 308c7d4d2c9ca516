"""One Lambda execution environment: imports a handler once, then runs invocations one at a time.

Started by filebatch_local.lambdas as `python -I -u _worker.py <config json>` with exactly the
environment the template gives the function. Standard library only, and nothing from
filebatch_local is imported: the handler's process must look like Lambda's, not like ours.

Protocol on two inherited pipe fds: 4-byte big-endian length + UTF-8 JSON, in both directions.
First {"ready": true, "usage": {...}} once the handler is imported (init), then per request
{"request_id", "event", "deadline_ms"} -> {"error": bool, "payload": "<json text>", "usage": {...}}.
"usage" is what the phase used, for the cost model: {"cpu_ms", "wall_ms", "sdk_calls": {service: n}}.
stdout/stderr are the function's log stream (the parent copies them to the log file).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import os
import struct
import sys
import sysconfig
import time
import traceback
import uuid
from types import ModuleType
from typing import Any


class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    def __init__(self, config: dict[str, Any], request_id: str, deadline_ms: int, log_stream: str) -> None:
        self.function_name: str = config["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn: str = config["function_arn"]
        self.memory_limit_in_mb = int(config["memory_mb"])
        self.aws_request_id = request_id
        self.log_group_name: str = config["log_group"]
        self.log_stream_name = log_stream
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = b""
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            return None  # the parent went away: this environment is over
        chunks += chunk
    return chunks


def _receive(fd: int) -> dict[str, Any] | None:
    header = _read_exactly(fd, 4)
    if header is None:
        return None
    body = _read_exactly(fd, struct.unpack(">I", header)[0])
    return None if body is None else json.loads(body)


def _peak_rss_mb() -> int | None:
    """This process's peak resident set (VmHWM), what Lambda's REPORT line calls "Max Memory Used".

    Not getrusage's ru_maxrss: Linux carries that over from the forking parent across exec, so a
    worker started by a large test process would report the parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return -(-int(line.split()[1]) // 1024)  # kB, rounded up: "under" must mean under
    except OSError:
        pass
    return None


# AWS SDK calls made by the current phase, by service (endpoint prefix: dynamodb, s3, states...).
_sdk_calls: dict[str, int] = {}


def _count_sdk_calls(endpoint: ModuleType) -> None:
    """Count every API call of botocore's clients from here on: Endpoint.make_request is the one
    method each call goes through (once per call, its retries inside)."""
    make_request = endpoint.Endpoint.make_request

    @functools.wraps(make_request)
    def counted(self: Any, operation_model: Any, request_dict: Any) -> Any:
        service = str(operation_model.service_model.endpoint_prefix)
        _sdk_calls[service] = _sdk_calls.get(service, 0) + 1
        return make_request(self, operation_model, request_dict)

    endpoint.Endpoint.make_request = counted


class _CountSdkCallsOnImport:
    """A meta path finder that wraps botocore.endpoint's Endpoint.make_request as the handler
    imports it (at init or later, lazily, in an invocation).

    botocore is not imported here: this process stays standard-library-only and looks like Lambda's
    until the handler imports what it ships. Counted here, in the environment, rather than from the
    requests moto receives: the figure is per invocation with no bookkeeping in the parent."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "botocore.endpoint":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_then_count(module: ModuleType) -> None:
            exec_module(module)
            _count_sdk_calls(module)

        spec.loader.exec_module = exec_then_count  # type: ignore[method-assign]
        return spec


class _Usage:
    """What one phase (init, an invocation) used: CPU time of the whole process (all its threads:
    what Lambda's CPU share has to run), wall time, and the SDK calls counted meanwhile."""

    def __init__(self, cpu_start: float = 0.0) -> None:
        self._cpu = cpu_start
        self._wall = time.perf_counter()
        _sdk_calls.clear()  # one phase at a time: the counts start again with each

    def report(self) -> dict[str, Any]:
        return {
            "cpu_ms": (time.process_time() - self._cpu) * 1000,
            "wall_ms": (time.perf_counter() - self._wall) * 1000,
            "sdk_calls": dict(_sdk_calls),
        }


def _send(fd: int, message: dict[str, Any]) -> None:
    if "payload" in message:
        message = {**message, "max_memory_used_mb": _peak_rss_mb()}
    data = json.dumps(message).encode()
    os.write(fd, struct.pack(">I", len(data)) + data)


def _error_payload(error: BaseException, error_type: str | None = None, message: str | None = None) -> str:
    # The shape Lambda's Python runtime returns for an unhandled exception. The class name alone is
    # the errorType: Step Functions matches it against ErrorEquals.
    frames = traceback.format_list(traceback.extract_tb(error.__traceback__))
    return json.dumps(
        {
            "errorMessage": str(error) if message is None else message,
            "errorType": error_type or type(error).__name__,
            "requestId": "",
            "stackTrace": frames,
        }
    )


def _log_error(payload: str) -> None:
    error = json.loads(payload)
    print(f"[ERROR] {error['errorType']}: {error['errorMessage']}", file=sys.stderr)
    for frame in error["stackTrace"]:
        print(frame.rstrip(), file=sys.stderr)
    sys.stderr.flush()


def _import_handler(config: dict[str, Any]) -> Any:
    # A module name unique per function, so handlers never share a module object by accident.
    module_name = "filebatch_fn_" + config["logical_id"]
    spec = importlib.util.spec_from_file_location(module_name, config["handler_file"])
    if spec is None or spec.loader is None:
        raise ImportError(f"Unable to import module '{config['handler_module']}': no such file")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return getattr(module, config["handler_attr"])


def _lambda_sys_path(code_dir: str, layer_dirs: list[str]) -> list[str]:
    """Like Lambda: the function's code (/var/task), its layers (/opt/python), then the runtime.
    The runtime here is this interpreter's stdlib and site-packages (standing in for what the layer
    build installs); source trees another .pth adds (the local tooling, the SDK) are dropped, so a
    handler importing something its layers do not ship fails here as it would on Lambda."""
    paths = sysconfig.get_paths()
    runtime = {os.path.realpath(paths[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib")}

    def is_runtime(entry: str) -> bool:
        real = os.path.realpath(entry or ".")
        return entry.endswith(".zip") or any(real == r or real.startswith(r + os.sep) for r in runtime)

    return [code_dir, *layer_dirs, *(entry for entry in sys.path if is_runtime(entry))]


def main() -> int:
    config: dict[str, Any] = json.loads(sys.argv[1])
    request_fd, response_fd = config["request_fd"], config["response_fd"]
    sys.path[:] = _lambda_sys_path(config["code_dir"], config["layer_dirs"])
    log_stream = time.strftime("%Y/%m/%d") + "/[$LATEST]" + uuid.uuid4().hex
    # Init is the whole process so far: the interpreter's start (process_time counts from it) and
    # the handler's import. Its wall time is from here (the interpreter's own start is not timed).
    init = _Usage()
    sys.meta_path.insert(0, _CountSdkCallsOnImport())

    init_error: str | None = None
    try:
        handler = _import_handler(config)
    except ImportError as error:
        init_error = _error_payload(
            error,
            "Runtime.ImportModuleError",
            f"Unable to import module '{config['handler_module']}': {error}",
        )
    except SyntaxError as error:
        init_error = _error_payload(error, "Runtime.UserCodeSyntaxError")
    except AttributeError as error:
        init_error = _error_payload(error, "Runtime.HandlerNotFound")
    except Exception as error:
        init_error = _error_payload(error)
    if init_error is not None:
        _log_error(init_error)
    sys.stdout.flush()
    # Init is over: the parent starts the invocation's clock only now, as Lambda does.
    _send(response_fd, {"ready": True, "usage": init.report()})

    while True:
        request = _receive(request_fd)
        if request is None:
            return 0
        if init_error is not None:
            # Lambda fails the invocation and throws the environment away; the next one re-inits.
            _send(response_fd, {"error": True, "payload": init_error})
            return 1
        context = LambdaContext(config, request["request_id"], request["deadline_ms"], log_stream)
        invocation = _Usage(time.process_time())
        try:
            result = handler(request["event"], context)
        except Exception as error:
            payload = _error_payload(error)
            _log_error(payload)
            _send(response_fd, {"error": True, "payload": payload, "usage": invocation.report()})
            continue
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        usage = invocation.report()
        try:
            text = json.dumps(result)
        except (TypeError, ValueError) as error:
            payload = _error_payload(error, "Runtime.MarshalError", f"Unable to marshal response: {error}")
            _log_error(payload)
            _send(response_fd, {"error": True, "payload": payload, "usage": usage})
            continue
        _send(response_fd, {"error": False, "payload": text, "usage": usage})


if __name__ == "__main__":
    sys.exit(main())
