"""What bench/coldstart.py measures: every function of the template, with the clients its handler
creates. (Its timings are figures it prints; nothing here looks at them.)"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from types import ModuleType

from tests.conftest import PROJECT_ROOT


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coldstart_bench", PROJECT_ROOT / "bench" / "coldstart.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_client_factories_are_the_runtime_functions_that_reach_boto3() -> None:
    # Given a runtime module with a direct, an indirect and a client-free factory
    bench = _bench()
    source = textwrap.dedent(
        """
        def _client(name):
            import boto3
            return boto3.client(name)

        def storage():
            return Storage(_client("s3"))

        def provider():
            return Provider(settings())

        def model():
            return Model(storage())
        """
    )
    # When the bench picks the factories that create clients
    found = bench.client_factories(source)
    # Then it follows calls through other factories, and leaves the client-free one out
    assert found == {"_client", "storage", "model"}


def test_every_function_of_the_template_is_measured_with_the_clients_its_handler_creates() -> None:
    # Given the source template (the built one has the same functions and handlers)
    bench = _bench()
    from filebatch_local.template import Template

    template = Template(PROJECT_ROOT / "template.yaml")
    # When the bench lists its jobs
    jobs = {
        job.name: job
        for job in bench.function_jobs(template, bench.client_factories(bench.RUNTIME_MODULE.read_text()))
    }
    # Then every function is there, each importing its handler module from its own directory first
    assert sorted(jobs) == sorted(template.functions())
    for name, job in jobs.items():
        spec = template.functions()[name]
        assert job.path[0] == str(spec.code_dir)
        assert (spec.code_dir / f"{job.module}.py").is_file()
        # with Lambda's own variables and the template's
        assert job.environment["AWS_LAMBDA_FUNCTION_NAME"] == spec.name
        assert spec.environment.items() <= job.environment.items()
    # and the clients are the handler's: the authorizer reads the table only; create also signs
    # upload URLs (S3) and remembers idempotency keys; the pure settings helpers are not clients
    assert jobs["AuthorizeRequestFunction"].factories == ["repository"]
    assert {"repository", "storage", "idempotent_calls"} <= set(jobs["CreateBatchFunction"].factories)
    assert all("upload_limits" not in job.factories for job in jobs.values())
