"""Cold starts are a product feature: importing a handler creates no AWS client and reads no setting.

Every handler module is imported in a fresh interpreter where creating a boto3 client or resource
raises, and where none of the settings' environment variables exist."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import PROJECT_ROOT

FUNCTIONS = sorted(p.name for p in (PROJECT_ROOT / "functions").iterdir() if (p / "app.py").is_file())

PROBE = textwrap.dedent(
    """
    import importlib.util, sys
    import boto3, boto3.session

    def refuse(*args, **kwargs):
        raise AssertionError("an AWS client was created at import time")

    boto3.client = boto3.resource = refuse
    boto3.session.Session.client = boto3.session.Session.resource = refuse
    for name in sys.argv[1:]:
        spec = importlib.util.spec_from_file_location(f"handler_{name}", f"functions/{name}/app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as any import does (pydantic generics look it up)
        spec.loader.exec_module(module)
        assert callable(module.lambda_handler), name
    print("imported", len(sys.argv) - 1)
    """
)


def test_importing_every_handler_creates_no_client_and_needs_no_settings() -> None:
    # Given an environment without TABLE_NAME, BUCKET_NAME, STATE_MACHINE_ARN, ...
    from filebatch.config import _ENVIRONMENT

    env = {k: v for k, v in os.environ.items() if k not in _ENVIRONMENT}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT / "layers" / "filebatch"), env.get("PYTHONPATH", "")]
    )
    # When every handler module is imported with boto3 clients forbidden
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *FUNCTIONS],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then all of them import
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"imported {len(FUNCTIONS)}"
    assert len(FUNCTIONS) == 11
