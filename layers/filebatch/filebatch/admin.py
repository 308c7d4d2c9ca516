"""Operator commands: `python -m filebatch.admin create-key --table <TableName> --tenant <tenant-id>`.

Prints the new API key once; only its SHA-256 is stored. Uses the caller's AWS credentials (or
AWS_ENDPOINT_URL for the local stack)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime


def create_key(table_name: str, tenant_id: str) -> str:
    import boto3

    from filebatch.adapters.dynamodb import DynamoBatchRepository
    from filebatch.services.auth import issue_api_key

    repo = DynamoBatchRepository(boto3.resource("dynamodb").Table(table_name))
    return issue_api_key(repo, tenant_id, now=datetime.now(UTC))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m filebatch.admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-key", help="issue an API key for a tenant")
    create.add_argument("--table", required=True, help="the stack's TableName output")
    create.add_argument("--tenant", required=True, help="tenant id: lowercase letters, digits, dashes")
    args = parser.parse_args(argv)
    print(create_key(args.table, args.tenant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
