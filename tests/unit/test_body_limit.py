"""The request body limit (413 above it) is derived from the largest request the API accepts."""

from __future__ import annotations

import json

from filebatch.http import MAX_BODY_BYTES
from filebatch.models.api import CreateBatchRequest, FileSpec

# API Gateway refuses payloads over 10 MB itself.
API_GATEWAY_MAX_PAYLOAD = 10 * 1024 * 1024


def test_the_largest_ascii_create_request_fits_under_the_body_limit() -> None:
    # Given the largest create request in ASCII: 10,000 files, each with every field at its maximum
    fields = FileSpec.model_json_schema()["properties"]
    longest_type = "a" * 127 + "/" + "b" * 127
    document = {
        "files": [
            {
                "filename": "n" * fields["filename"]["maxLength"],
                "size": fields["size"]["maximum"],
                "content_type": longest_type,
            }
            for _ in range(CreateBatchRequest.model_json_schema()["properties"]["files"]["maxItems"])
        ]
    }
    CreateBatchRequest.model_validate(document)
    # Then it fits, as json.dumps writes it (with spaces after separators), under the limit
    assert len(json.dumps(document).encode()) <= MAX_BODY_BYTES
    # And the limit stays under what API Gateway itself accepts, so the 413 is always ours
    assert MAX_BODY_BYTES < API_GATEWAY_MAX_PAYLOAD
