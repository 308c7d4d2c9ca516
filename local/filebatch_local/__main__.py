"""python -m filebatch_local {up,demo,lint-asl} — see README / Makefile targets `up`, `demo`,
`check-template`."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from filebatch_local.stack import LocalStack
from filebatch_local.template import TemplateError


def _parameter_overrides(values: list[str]) -> dict[str, str]:
    """`Key=Value` or SAM's `ParameterKey=Key,ParameterValue=Value`."""
    overrides: dict[str, str] = {}
    for value in values:
        if value.startswith("ParameterKey="):
            key_part, _, value_part = value.partition(",ParameterValue=")
            overrides[key_part.removeprefix("ParameterKey=")] = value_part
            continue
        key, sep, val = value.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--parameter-overrides expects Key=Value, got {value!r}")
        overrides[key] = val
    return overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m filebatch_local")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "serve the whole stack on localhost until Ctrl-C"),
        ("demo", "start the stack and push a directory of sample files through it"),
        ("run-against", "start the stack, run a command against it ({api_url}, {api_key} filled in), stop"),
    ):
        command = commands.add_parser(name, help=help_text)
        if name == "demo":
            command.add_argument("samples", type=Path, help="directory of sample files")
        if name == "run-against":
            command.add_argument("argv", nargs=argparse.REMAINDER, help="-- the command and its arguments")
        command.add_argument("--port", type=int, default=3000, help="API port (0: any free port)")
        command.add_argument("--parameter-overrides", nargs="*", default=[], metavar="Key=Value")
        command.add_argument("--project-root", type=Path, default=Path.cwd())
        command.add_argument("--verbose", action="store_true", help="also echo function logs to the console")
    lint = commands.add_parser("lint-asl", help="cfn-lint every DefinitionUri state machine file")
    lint.add_argument("template", type=Path)
    openapi = commands.add_parser("openapi", help="write the API's OpenAPI document, built from the code")
    openapi.add_argument("template", type=Path)
    openapi.add_argument("output", type=Path)
    models = commands.add_parser("request-models", help="print the API Gateway request models (YAML)")
    models.add_argument("template", type=Path)
    commands.add_parser("usage-plans", help="print the API Gateway usage plans of filebatch.plans (YAML)")
    return parser


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    return stop


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "lint-asl":
        from filebatch_local.lint import main as lint_main

        return int(lint_main(args.template))
    if args.command == "openapi":
        from filebatch_local.openapi import build_document, render

        args.output.write_text(render(build_document(args.template)))
        return 0
    if args.command == "request-models":
        import yaml

        from filebatch_local.openapi import request_models

        print(yaml.safe_dump(request_models(args.template), sort_keys=False, width=100), end="")
        return 0
    if args.command == "usage-plans":
        import yaml

        from filebatch_local.usage_plans import usage_plan_resources

        print(yaml.safe_dump(usage_plan_resources(), sort_keys=False, width=100), end="")
        return 0

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        overrides = _parameter_overrides(args.parameter_overrides)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    stack = LocalStack(
        args.project_root, api_port=args.port, parameter_overrides=overrides, verbose=args.verbose
    )
    stop = _stop_on_sigterm()
    try:
        return _serve(stack, args, stop)
    except TemplateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # typically: the API port is taken
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while starting: start() has already stopped what it started
        return 130


def _serve(stack: LocalStack, args: argparse.Namespace, stop: threading.Event) -> int:
    with stack:
        if args.command == "demo":
            # The demo itself is the lead's (filebatch_local/demo.py).
            from filebatch_local.demo import run_demo  # type: ignore[import-not-found, unused-ignore]

            return int(run_demo(stack, args.samples))
        if args.command == "run-against":
            argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            filled = [a.format(api_url=stack.api_url, api_key=stack.api_key) for a in argv]
            return subprocess.run(filled, check=False).returncode  # noqa: S603 - the caller's own command
        print(f"API:       {stack.api_url}  (stage prefix optional)")
        print(f"moto:      {stack.moto_endpoint}")
        print(f"key file:  {stack.stack_file}")
        print(f"logs:      {stack.state_dir / 'logs'}")
        print("Ctrl-C stops the stack.", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        print("stopping...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
