"""`make smoke-aws`: one real image through Amazon Bedrock with the production code path (the bedrock
provider, its adapter and the client configuration the describe function uses), when AWS
credentials are present. Without credentials it says so and does nothing. Not part of `make test`.

    .venv/bin/python scripts/smoke_aws.py [--model-id ID] [--region REGION] [FILE]

The model defaults to the template's BedrockModelId default, the Region to the environment's
(AWS_REGION / AWS_DEFAULT_REGION / profile). It prints the description and the call's tokens, latency
and stop reason; it exits 1 if Bedrock refused or failed, with the error's code.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    from filebatch_local.template import load_template

    default_model = load_template(ROOT / "template.yaml")["Parameters"]["BedrockModelId"]["Default"]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file", nargs="?", type=Path, default=ROOT / "samples" / "grace-hopper.jpg")
    parser.add_argument("--model-id", default=default_model)
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)

    import boto3

    session = boto3.Session(region_name=args.region)
    if session.get_credentials() is None:
        print(
            "smoke-aws: no AWS credentials found (environment, shared config or instance role): "
            "did nothing, sent nothing to Bedrock."
        )
        return 0
    region = session.region_name or "us-east-1"

    from filebatch.adapters.bedrock import BedrockConverseModel
    from filebatch.errors import FilebatchError
    from filebatch.media.inspect import RANDOM_ACCESS_TYPES, basic_metadata, inspect_stream
    from filebatch.media.source import BytesMedia
    from filebatch.runtime import bedrock_client_config
    from filebatch.services.bedrock_provider import BedrockDescriptionProvider

    content = args.file.read_bytes()
    with tempfile.TemporaryFile() as spool:
        facts = inspect_stream([content], spool)
        if facts.detected_content_type in RANDOM_ACCESS_TYPES:
            facts.metadata = basic_metadata(spool, facts.detected_content_type)
    client = session.client("bedrock-runtime", region_name=region, config=bedrock_client_config())
    provider = BedrockDescriptionProvider(BedrockConverseModel(args.model_id, client))
    print(f"smoke-aws: describing {args.file.name} with {args.model_id} in {region} ...")
    try:
        description = provider.describe(BytesMedia(content), facts, args.file.name)
    except FilebatchError as error:
        print(f"smoke-aws: FAILED ({type(error).__name__}) {error}")
        return 1
    print(json.dumps(description.model_dump(mode="json"), indent=2, ensure_ascii=False))
    invocation = description.invocation
    if invocation is not None:
        print(
            f"smoke-aws: OK: {invocation.usage.input_tokens} input and {invocation.usage.output_tokens} "
            f"output tokens, {invocation.latency_ms} ms, stop reason {invocation.stop_reason}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
