"""Cost benchmark: push N files through the local stack, meter what every AWS service received, and
print what it would cost on AWS per 1,000 files (before model tokens).

    .venv/bin/python bench/cost.py [--files 1000] [--poll-seconds 5]

The run is bench/e2e.py's (same files, same client); the local stack is started from template.yaml
and metered by filebatch_local.metering from after its start (provisioning, a one-off per stack, is
not counted) to the batches' end. Prices and billing rules: filebatch_local.pricing. Figures go to
stdout and bench/out/cost-<N>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script (bench/ first on the path) or imported as bench.cost (the tests).
sys.path.insert(0, str(ROOT))

from bench.e2e import make_files, run, save_figures  # noqa: E402

TARGET_USD_PER_1000 = 0.02


def wait_for_executions(stack: Any) -> None:
    """The batch is terminal once FinalizeBatch has written it; its execution ends just after."""
    sfn = stack.client("stepfunctions")
    for machine in sfn.list_state_machines()["stateMachines"]:
        while sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")[
            "executions"
        ]:
            time.sleep(0.5)


def report(meter: Any, template: Any, files: int) -> dict[str, Any]:
    from filebatch_local.pricing import PRICES, lambda_durations, lambda_wall_clock_lines, per_service, usage

    scale = 1000 / files
    lines = usage(meter, template)
    services = per_service(lines)
    total = sum(services.values())
    requests: dict[str, dict[str, float]] = defaultdict(dict)
    for (service, operation), count in sorted(meter.requests.items()):
        requests[service][operation] = round(count * scale, 1)
    units = {f"{service}: {unit}": round(n * scale, 2) for (service, unit), n in sorted(meter.units.items())}
    modelled_compute = sum(line.usd for line in lines if line.service == "Lambda" and "GB-s" in line.item)
    wall_clock = lambda_wall_clock_lines(meter, template)
    return {
        "files": files,
        "requests_per_1000_files": requests,
        "units_per_1000_files": units,
        "lines_per_1000_files": [
            {
                "service": line.service,
                "item": line.item,
                "quantity": line.quantity * scale,
                "unit_usd": PRICES[line.price].usd,
                "usd": line.usd * scale,
            }
            for line in lines
        ],
        "usd_per_1000_files": {service: usd * scale for service, usd in services.items()},
        "total_usd_per_1000_files": total * scale,
        # Lambda's billed duration is modelled (CPU time at the memory's vCPU share + SDK call
        # latencies, INIT included): these are the measurements behind it, per invocation.
        "lambda_per_invocation": lambda_durations(meter),
        # The same compute at the local wall time, not in the total: an upper bound in aggregate (the
        # cores are oversubscribed), though not for each invocation: below 1,769 MB Lambda's CPU
        # share is smaller than the local core a lone per-batch invocation gets.
        "lambda_compute_usd_per_1000_files": {
            "modelled": modelled_compute * scale,
            "wall_clock_upper_bound": sum(line.usd for line in wall_clock) * scale,
        },
        "meter": meter.as_dict(),
    }


# Bill what a production stack does: log bytes depend on the log level (DEBUG outside prod), and a
# production stack refuses loopback webhook receivers (the local default allows them).
PRODUCTION_PARAMETERS = {"EnvironmentName": "prod", "WebhookAllowLoopback": "false"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--upload-concurrency", type=int, default=16)
    # The client's status polls are requests too (API Gateway, a Lambda, a read each): a client
    # waiting on the webhook makes none, so the bench keeps them few.
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    # A variant of the template (in the project root, so its relative paths resolve) to compare.
    parser.add_argument("--template", default="template.yaml")
    args = parser.parse_args(argv)

    from filebatch_local.metering import Meter, metering
    from filebatch_local.stack import LocalStack

    files = make_files(args.files)
    stack = LocalStack(
        ROOT,
        api_port=0,
        state_dir=ROOT / ".local" / "bench-cost",
        template_name=args.template,
        parameter_overrides=PRODUCTION_PARAMETERS,
    )
    with stack:
        api_key = stack.create_api_key("bench")
        assert stack.template is not None
        with metering(Meter()) as meter:
            figures = run(
                stack.api_url, api_key, files, args.upload_concurrency, poll_seconds=args.poll_seconds
            )
            wait_for_executions(stack)
        result = report(meter, stack.template, args.files) | {"run": figures}

    print(f"files {args.files} in {figures['batches']} batch(es), outcome {figures['statuses']}")
    print("\nrequests per 1,000 files")
    for service, operations in result["requests_per_1000_files"].items():
        listed = ", ".join(f"{op} {n:g}" for op, n in operations.items())
        # The local gateway reads usage plans and keys from moto; API Gateway does that inside.
        local = " (the local gateway's own reads: not billed)" if service == "apigateway" else ""
        print(f"  {service:<14} {listed}{local}")
    print("\nunits per 1,000 files")
    for unit, n in result["units_per_1000_files"].items():
        print(f"  {unit:<56} {n:>10g}")
    print(f"\n{'billed per 1,000 files':<58} {'quantity':>12} {'USD':>10}")
    for line in result["lines_per_1000_files"]:
        label = f"{line['service']}: {line['item']}"
        print(f"  {label:<56} {line['quantity']:>12.4g} {line['usd']:>10.5f}")
    print("\nLambda per invocation (averages): CPU ms, SDK calls -> modelled billed ms | local wall ms")
    for logical_id, f in result["lambda_per_invocation"].items():
        line = f"  {logical_id:<28}"
        if "count" in f:
            line += (
                f" {f['count']:>5g}x cpu {f['cpu_ms']:>7.1f} sdk {f['sdk_calls']:>4.1f}"
                f" -> {f['billed_ms']:>7.1f} | wall {f['wall_ms']:>7.1f}"
            )
        if "init_count" in f:
            line += f"   INIT {f['init_count']:g}x cpu {f['init_cpu_ms']:.0f} -> {f['init_billed_ms']:.0f}"
        print(line)
    compute = result["lambda_compute_usd_per_1000_files"]
    print(
        f"  Lambda compute per 1,000 files: modelled {compute['modelled']:.5f} USD (in the total);"
        f" at local wall time {compute['wall_clock_upper_bound']:.5f} USD (upper bound, not in the total)"
    )
    print("\nUSD per 1,000 files, by service")
    total = result["total_usd_per_1000_files"]
    for service, usd in result["usd_per_1000_files"].items():
        print(f"  {service:<16} {usd:>9.5f}  {usd / total:>6.1%}")
    print(f"  {'total':<16} {total:>9.5f}  (target {TARGET_USD_PER_1000}, before model tokens)")
    return save_figures(f"cost-{args.files}", result, figures)


if __name__ == "__main__":
    sys.exit(main())
