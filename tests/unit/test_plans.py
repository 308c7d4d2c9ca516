"""The plans configuration is the one source of per-tenant limits: the template's usage plans are
generated from it, and the service reads the rest."""

from __future__ import annotations

import itertools

import pytest

from filebatch.plans import PLAN_TAG, PLANS, plan_named
from filebatch_local.template import load_template
from filebatch_local.usage_plans import usage_plan_resources
from tests.conftest import PROJECT_ROOT


def test_the_template_declares_exactly_the_generated_usage_plans() -> None:
    # Given the template and the usage plans generated from filebatch.plans
    template = load_template(PROJECT_ROOT / "template.yaml")
    declared = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::ApiGateway::UsagePlan"
    }
    # Then they are the same (else: paste `python -m filebatch_local usage-plans` into the template)
    assert declared == usage_plan_resources()
    # And every plan has one, tagged with its name, on the API's stage
    tags = {r["Properties"]["Tags"][0]["Value"] for r in declared.values()}
    assert tags == set(PLANS)
    assert all(r["Properties"]["Tags"][0]["Key"] == PLAN_TAG for r in declared.values())


def test_the_api_meters_every_route_under_the_key_the_authorizer_names() -> None:
    api = load_template(PROJECT_ROOT / "template.yaml")["Resources"]["Api"]["Properties"]
    assert api["ApiKeySourceType"] == "AUTHORIZER"
    assert api["Auth"]["ApiKeyRequired"] is True
    # And the stage's own throttle is above every plan's, so a plan's limit is the one a tenant meets
    [stage] = api["MethodSettings"]
    assert stage["ThrottlingRateLimit"] >= max(p.requests_per_second for p in PLANS.values())
    assert stage["ThrottlingBurstLimit"] >= max(p.burst for p in PLANS.values())
    # And both 429s a gateway gives answer in the API's error shape, the throttle with Retry-After
    responses = api["GatewayResponses"]
    assert responses["THROTTLED"]["ResponseParameters"]["Headers"]["Retry-After"] == "'1'"
    for kind, code in (("THROTTLED", "throttled"), ("QUOTA_EXCEEDED", "request_quota_exceeded")):
        assert responses[kind]["StatusCode"] == 429
        assert f'"code":"{code}"' in responses[kind]["ResponseTemplates"]["application/json"]


def test_plans_grow_from_free_to_enterprise() -> None:
    order = [PLANS[name] for name in ("free", "starter", "pro", "enterprise")]
    for smaller, larger in itertools.pairwise(order):
        assert smaller.requests_per_second < larger.requests_per_second
        assert smaller.burst < larger.burst
        assert smaller.max_files_per_batch <= larger.max_files_per_batch
        for limit in ("monthly_requests", "max_open_batches", "monthly_files"):
            small, large = getattr(smaller, limit), getattr(larger, limit)
            assert small is not None and (large is None or small < large)


def test_an_unknown_plan_name_is_an_error() -> None:
    assert plan_named("pro").name == "pro"
    with pytest.raises(ValueError, match="unknown plan 'gold'"):
        plan_named("gold")
