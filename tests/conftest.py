"""Shared test setup. boto3 never reaches a real AWS account from the tests: credentials are fake
and every test that talks to AWS runs under moto (in-process or the local stack's server)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "filebatch-tests",
    }
)
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)


def load_event(name: str) -> dict[str, Any]:
    """A real AWS payload shape from tests/fixtures/events (a fresh copy each time)."""
    return copy.deepcopy(json.loads((FIXTURES / "events" / f"{name}.json").read_text()))


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT
