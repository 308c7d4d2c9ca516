"""The template's API Gateway usage plans, generated from the plans configuration
(filebatch.plans): `python -m filebatch_local usage-plans` prints them; a test fails on drift."""

from __future__ import annotations

from typing import Any

from filebatch.plans import PLAN_TAG, PLANS


def logical_id(plan: str) -> str:
    return f"{plan.capitalize()}UsagePlan"


def usage_plan_resources(api_logical_id: str = "Api") -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = {}
    for plan in PLANS.values():
        properties: dict[str, Any] = {
            "UsagePlanName": {"Fn::Sub": f"${{AWS::StackName}}-{plan.name}"},
            "Description": f"filebatch {plan.name} plan: {plan.description}",
            "ApiStages": [{"ApiId": {"Ref": api_logical_id}, "Stage": {"Ref": f"{api_logical_id}.Stage"}}],
            "Throttle": {"RateLimit": plan.requests_per_second, "BurstLimit": plan.burst},
        }
        if plan.monthly_requests is not None:
            properties["Quota"] = {"Limit": plan.monthly_requests, "Period": "MONTH"}
        properties["Tags"] = [{"Key": PLAN_TAG, "Value": plan.name}]
        resources[logical_id(plan.name)] = {"Type": "AWS::ApiGateway::UsagePlan", "Properties": properties}
    return resources
