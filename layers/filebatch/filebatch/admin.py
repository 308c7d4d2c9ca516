"""Operator commands:

    python -m filebatch.admin create-key --table <TableName> --api-id <ApiId> --stage <ApiStageName> \\
        --tenant <tenant-id> --plan free|starter|pro|enterprise

Prints the new API key once; only its SHA-256 is stored. The key gets an API Gateway API key under
the plan's usage plan (throttle and monthly quota). The three stack values are the stack's Outputs.
Uses the caller's AWS credentials (or AWS_ENDPOINT_URL for the local stack)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from filebatch.plans import DEFAULT_PLAN, PLANS


def create_key(table_name: str, api_id: str, stage: str, tenant_id: str, plan: str) -> str:
    import boto3

    from filebatch.adapters.apigateway import ApiGatewayUsageKeys
    from filebatch.adapters.dynamodb import DynamoBatchRepository
    from filebatch.services.auth import issue_api_key

    repo = DynamoBatchRepository(boto3.resource("dynamodb").Table(table_name))
    usage_keys = ApiGatewayUsageKeys(boto3.client("apigateway"), api_id=api_id, stage=stage)
    return issue_api_key(repo, usage_keys, tenant_id, plan=plan, now=datetime.now(UTC))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m filebatch.admin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-key", help="issue an API key for a tenant on a plan")
    create.add_argument("--table", required=True, help="the stack's TableName output")
    create.add_argument("--api-id", required=True, help="the stack's ApiId output")
    create.add_argument("--stage", required=True, help="the stack's ApiStageName output")
    create.add_argument("--tenant", required=True, help="tenant id: lowercase letters, digits, dashes")
    create.add_argument("--plan", choices=sorted(PLANS), default=DEFAULT_PLAN, help="the tenant's plan")
    args = parser.parse_args(argv)
    print(create_key(args.table, args.api_id, args.stage, args.tenant, args.plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
