"""Cold start of every function: importing its handler and creating its AWS clients, against
`import boto3` plus two clients.

    .venv/bin/python bench/coldstart.py [--build-dir .aws-sam/build] [--repeat 5] [--python python3.13]

`make coldstart` runs `sam build` first (as `make build` does). Every function of the built template
is measured on the build output exactly as Lambda lays it out: a fresh `python3.13 -I -S` whose path
is the function's directory, then its layers' python/ directories, then the standard library (and
-B: /var/task and /opt are read-only on Lambda, so no run leaves bytecode for the next); its
environment is what Lambda sets (fake credentials included) plus the function's template
environment, nothing else. Timed inside that interpreter (so its own start-up is left out): importing
the handler module, then calling the `filebatch.runtime` factories the handler calls that create a
boto3 client or resource (the ones its first invocation creates). The baseline is `import boto3` plus
a DynamoDB and an S3 client from a compiled copy of the layer's own boto3 (the runtime's boto3 is
compiled; the layer's shadows it). Runs go round-robin over the functions so a busy core spreads
over all of them. Each run records the probe's CPU time (process_time: what the import costs, steady
when other processes share the cores, as they do on a developer's machine) and its wall time; the
table gives the CPU median and minimum of --repeat runs and their ratios to the baseline's, the wall
median and its ratio, the modules loaded, and the process's peak RSS (ru_maxrss) after the import.
Figures go to stdout and bench/out/coldstart.json. It checks nothing.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "local"))

from filebatch_local.lambdas import lambda_service_environment  # noqa: E402 - needs the path above
from filebatch_local.template import FunctionSpec, Template  # noqa: E402 - needs the path above

RUNTIME_MODULE = ROOT / "layers" / "filebatch" / "filebatch" / "runtime.py"
REGION = "us-east-1"
# The clients of the baseline, created as `boto3.client(name)`.
BASELINE_CLIENTS = ("dynamodb", "s3")

# Timed in the fresh interpreter. argv[1]: JSON {"path": [...], "module": str | null, "factories": [...]}.
PROBE = """
import json, resource, sys, time
job = json.loads(sys.argv[1])
sys.path[:0] = job["path"]
start, start_cpu = time.perf_counter(), time.process_time()
if job["module"] is None:
    import boto3
    clients = [boto3.client(name) for name in job["clients"]]
else:
    import importlib
    importlib.import_module(job["module"])
    from filebatch import runtime
    made = [getattr(runtime, name)() for name in job["factories"]]
cpu_seconds, seconds = time.process_time() - start_cpu, time.perf_counter() - start
out = {
    "cpu_seconds": cpu_seconds,
    "seconds": seconds,
    "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "modules": len(sys.modules),
}
if job.get("list_files"):
    out["files"] = [m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)]
print(json.dumps(out))
"""

# What Lambda sets in every execution environment (credentials faked: clients are created, never used).
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
# What Lambda's sandbox adds to the function's environment (filebatch_local.lambdas): its role's
# credentials (fake: nothing is called) and the X-Ray daemon that `Tracing: Active` gives, so that
# the Tracer takes its Lambda path.
LAMBDA_SANDBOX = {
    "AWS_ACCESS_KEY_ID": "ASIACOLDSTARTBENCH00",
    "AWS_SECRET_ACCESS_KEY": "cold-start-bench-not-a-secret",
    "AWS_SESSION_TOKEN": "cold-start-bench-not-a-token",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    "_AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129",
    "_AWS_XRAY_DAEMON_PORT": "2000",
}


@dataclass(frozen=True)
class Job:
    name: str
    path: list[str]
    module: str | None
    factories: list[str]
    environment: dict[str, str]
    memory_mb: int | None = None


def client_factories(runtime_source: str) -> set[str]:
    """Top-level functions of filebatch.runtime that create a boto3 client or resource: those that
    import boto3, and those that call one of them (transitively)."""
    functions = {
        node.name: node for node in ast.parse(runtime_source).body if isinstance(node, ast.FunctionDef)
    }

    def imports_boto3(node: ast.FunctionDef) -> bool:
        return any(
            isinstance(n, ast.Import) and any(alias.name == "boto3" for alias in n.names)
            for n in ast.walk(node)
        )

    def names_used(node: ast.FunctionDef) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}

    found = {name for name, node in functions.items() if imports_boto3(node)}
    while True:
        more = {name for name, node in functions.items() if name not in found and names_used(node) & found}
        if not more:
            return found
        found |= more


def runtime_calls(handler_source: str) -> list[str]:
    """The `runtime.<name>(...)` calls of a handler module, in order of first appearance."""
    calls: list[str] = []
    for node in ast.walk(ast.parse(handler_source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "runtime"
            and node.func.attr not in calls
        ):
            calls.append(node.func.attr)
    return sorted(calls)


def function_jobs(template: Template, factories: set[str]) -> list[Job]:
    """One job per function of the template: its directory and layers, its clients, its environment."""
    jobs = []
    for logical_id, spec in sorted(template.functions().items()):
        module = spec.handler_file.relative_to(spec.code_dir).with_suffix("").as_posix().replace("/", ".")
        jobs.append(
            Job(
                name=logical_id,
                path=[str(spec.code_dir), *(str(layer / "python") for layer in spec.layer_dirs)],
                module=module,
                factories=[c for c in runtime_calls(spec.handler_file.read_text()) if c in factories],
                environment=_lambda_environment(spec),
                memory_mb=spec.memory_mb,
            )
        )
    return jobs


def _lambda_environment(spec: FunctionSpec) -> dict[str, str]:
    return lambda_service_environment(spec, REGION) | LAMBDA_SANDBOX


def native_dists(layer_python: Path) -> dict[str, list[str]]:
    """Distributions in the layer that ship extension modules: "name==version" -> the top-level
    entries their RECORD lists (dist-info included)."""
    found = {}
    for record in sorted(layer_python.glob("*.dist-info/RECORD")):
        paths = [line.split(",")[0] for line in record.read_text().splitlines() if line]
        if any(path.endswith(".so") or ".so." in path for path in paths):
            name, version = record.parent.name.removesuffix(".dist-info").rsplit("-", 1)
            found[f"{name}=={version}"] = sorted({Path(path).parts[0] for path in paths} - {"..", "bin"})
    return found


def host_layer(python: str, layer_python: Path, scratch: Path) -> Path:
    """A copy of the layer this machine can import: the distributions with extension modules (built
    for the layer's architecture) replaced by the same versions for this machine's, installed and
    compiled (or not) as the layer's own are. Everything else is the build output, byte for byte."""
    target = scratch / "layer"
    shutil.copytree(layer_python, target, symlinks=True)
    native = native_dists(layer_python)
    if not native:
        return target
    host = scratch / "host"
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--only-binary=:all:",
            "--target",
            str(host),
            *native,
        ],
        check=True,
    )
    compiled = any(layer_python.rglob("__pycache__"))
    for entries in native.values():
        for entry in entries:
            path = target / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for installed in host.iterdir():
        if installed.name == "bin":
            continue
        destination = target / installed.name
        if installed.is_dir():
            shutil.copytree(installed, destination, dirs_exist_ok=True)
        else:
            shutil.copy2(installed, destination)
        if compiled and installed.is_dir():
            _compile(python, destination)
    return target


def _compile(python: str, directory: Path) -> None:
    # As the layer's Makefile does (layers/filebatch/Makefile).
    subprocess.run(
        [python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(directory)],
        check=True,
    )


def compiled_boto3(python: str, layer_python: Path, scratch: Path, environment: dict[str, str]) -> Path:
    """A copy of what `import boto3` and its clients load from the layer, compiled, in scratch/python."""
    job = {"path": [str(layer_python)], "module": None, "clients": list(BASELINE_CLIENTS), "list_files": True}
    out = _run(python, job, environment)
    tops = {
        Path(file).relative_to(layer_python).parts[0]
        for file in out["files"]
        if Path(file).is_relative_to(layer_python)
    }
    target = scratch / "python"
    for top in sorted(tops):
        source = layer_python / top
        if source.is_dir():
            shutil.copytree(source, target / top, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / top)
    _compile(python, target)
    return target


def _run(python: str, job: dict[str, Any], environment: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [python, "-I", "-S", "-B", "-c", PROBE, json.dumps(job)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=job["path"][0],
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{job.get('module') or 'baseline'}: {result.stderr[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _row(job: Job, runs: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, Any]:
    def median(key: str, of: list[dict[str, Any]] = runs) -> float:
        return float(statistics.median(run[key] for run in of))

    def least(key: str, of: list[dict[str, Any]] = runs) -> float:
        return float(min(run[key] for run in of))

    return {
        "function": job.name,
        "clients": job.factories if job.module else list(BASELINE_CLIENTS),
        "cpu_median_ms": round(1000 * median("cpu_seconds"), 1),
        "cpu_min_ms": round(1000 * least("cpu_seconds"), 1),
        "ratio": round(median("cpu_seconds") / median("cpu_seconds", baseline), 2),
        "ratio_of_minima": round(least("cpu_seconds") / least("cpu_seconds", baseline), 2),
        "wall_median_ms": round(1000 * median("seconds"), 1),
        "wall_ratio": round(median("seconds") / median("seconds", baseline), 2),
        "modules": median("modules"),
        "peak_rss_mb": round(median("max_rss_kib") / 1024, 1),
        "memory_size_mb": job.memory_mb,
    }


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--python", default="python3.13", help="the Lambda runtime's Python")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "coldstart.json")
    args = parser.parse_args(argv)
    template_path = args.build_dir / "template.yaml"
    if not template_path.exists():
        print(f"No sam build output in {args.build_dir}: run `make coldstart` (or `make build` first).")
        return 1
    # The interpreter itself, not a pyenv shim: the shim's own start-up is not the runtime's.
    python = subprocess.run(
        [args.python, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    template = Template(template_path)
    jobs = function_jobs(template, client_factories(RUNTIME_MODULE.read_text()))
    built_layer = jobs[0].path[1]
    with tempfile.TemporaryDirectory() as scratch:
        layer_python = host_layer(python, Path(built_layer), Path(scratch))
        jobs = [
            Job(**{**job.__dict__, "path": [str(layer_python) if p == built_layer else p for p in job.path]})
            for job in jobs
        ]
        baseline = Job(
            name=f"baseline: import boto3 + {len(BASELINE_CLIENTS)} clients",
            path=[str(compiled_boto3(python, layer_python, Path(scratch), jobs[0].environment))],
            module=None,
            factories=[],
            # A function's environment (boto3 reads only its AWS_ variables), for the same conditions.
            environment=jobs[0].environment,
        )
        runs: dict[str, list[dict[str, Any]]] = {job.name: [] for job in [baseline, *jobs]}
        for _ in range(args.repeat):
            for job in [baseline, *jobs]:
                spec = {
                    "path": job.path,
                    "module": job.module,
                    "factories": job.factories,
                    "clients": list(BASELINE_CLIENTS),
                }
                runs[job.name].append(_run(python, spec, job.environment))
    rows = [_row(job, runs[job.name], runs[baseline.name]) for job in [baseline, *jobs]]
    print(f"Cold start on {python}, {args.repeat} runs each, build {_relative(args.build_dir)}")
    print("CPU = the probe's process_time (steady on a shared machine), wall = perf_counter.\n")
    print(
        "| function | clients created | CPU median | x baseline | CPU min | x (minima) | wall median "
        "| x baseline (wall) | modules | peak RSS | MemorySize |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['function']} | {', '.join(row['clients'])} | {row['cpu_median_ms']:.0f} ms | "
            f"{row['ratio']:.2f} | {row['cpu_min_ms']:.0f} ms | {row['ratio_of_minima']:.2f} | "
            f"{row['wall_median_ms']:.0f} ms | {row['wall_ratio']:.2f} | {row['modules']:.0f} | "
            f"{row['peak_rss_mb']:.0f} MB | {row['memory_size_mb'] or ''} |"
        )
    worst = max(rows[1:], key=lambda row: row["ratio"])
    print(
        f"\nWorst: {worst['function']} at {worst['ratio']:.2f}x the baseline's CPU time (medians; "
        f"{worst['ratio_of_minima']:.2f}x of the minima)."
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"python": python, "repeat": args.repeat, "build_dir": str(args.build_dir), "rows": rows},
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
