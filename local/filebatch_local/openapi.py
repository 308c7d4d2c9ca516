"""The API's one OpenAPI 3.1 document, built from the code: each API function's Powertools resolver
generates its routes' part (from the handler's own pydantic models and route declarations), and
this merges them, for every route template.yaml declares.

What is added here is what no single handler knows: the document's info and servers, the security
scheme of the API's authorizer, and the removal of the 422 response Powertools documents for every
validated route (this API answers validation errors with 400 in its own error shape).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from filebatch_local.template import Template

TITLE = "filebatch API"
DOCUMENT_VERSION = "1.0.0"
DESCRIPTION = (
    "Batch file processing: declare a batch of files, upload each straight to S3 with the presigned "
    "instruction given, and read one result per file. Every error is JSON: "
    '`{"error": {"code", "message", "details"?}}`.'
)
_POWERTOOLS_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def _handler_module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _merged(template: Template) -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) of every route the template declares, from its handler's resolver."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for route in sorted(template.routes(), key=lambda r: (r.path, r.method)):
        spec = template.function(route.function_logical_id)
        module = _handler_module(spec.handler_file, f"filebatch_openapi_{route.function_logical_id}")
        part = json.loads(
            module.app.get_openapi_schema(title=TITLE, version=DOCUMENT_VERSION).model_dump_json(
                by_alias=True, exclude_none=True
            )
        )
        operation = part["paths"][route.path][route.method.lower()]
        operation["responses"].pop("422", None)
        operation["operationId"] = route.function_logical_id.removesuffix("Function")
        paths.setdefault(route.path, {})[route.method.lower()] = operation
        schemas.update(part.get("components", {}).get("schemas", {}))
    for name in _POWERTOOLS_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return paths, schemas


def build_document(template_path: Path) -> dict[str, Any]:
    template = Template(template_path, {})
    paths, schemas = _merged(template)
    # The model bounds a declared size by what S3 can hold; a deployment refuses more than its
    # MaxFileBytes. The contract says what the template's default deployment accepts.
    max_file_bytes = int(template.parameters["MaxFileBytes"])
    size = schemas["FileSpec"]["properties"]["size"]
    size["maximum"] = max_file_bytes
    size["description"] += f" At most the deployment's MaxFileBytes ({max_file_bytes:,} by default)."
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": DOCUMENT_VERSION, "description": DESCRIPTION},
        "servers": [
            {
                "url": "https://{api_id}.execute-api.{region}.amazonaws.com/{stage}",
                "description": "A deployed stack (its ApiUrl output)",
                "variables": {
                    "api_id": {"default": "example"},
                    "region": {"default": "us-east-1"},
                    "stage": {"default": "dev"},
                },
            },
            {"url": "http://127.0.0.1:3000/dev", "description": "The local stack (make up)"},
        ],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key issued by an operator: `Authorization: Bearer <api key>`.",
                }
            },
        },
    }


def request_models(template_path: Path) -> dict[str, dict[str, Any]]:
    """API Gateway models (JSON Schema draft 4) of every request body, from the same handler models
    as the document, so that the deployed API refuses a malformed body before a function runs. The
    size bound is the model's own (any MaxFileBytes a deployment may choose passes the gateway; the
    service enforces the deployment's)."""
    paths, schemas = _merged(Template(template_path, {}))
    models: dict[str, dict[str, Any]] = {}
    for operations in paths.values():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            name = body["schema"]["$ref"].rsplit("/", 1)[1]
            definitions: dict[str, Any] = {}
            model = _draft4(schemas[name], schemas, definitions)
            models[name] = {
                "$schema": "http://json-schema.org/draft-04/schema#",
                **model,
                **({"definitions": definitions} if definitions else {}),
            }
    return models


def _draft4(schema: Any, schemas: dict[str, Any], definitions: dict[str, Any]) -> Any:
    """A component schema with its references moved under `definitions`, OpenAPI-only keys dropped and
    `integer` written so that draft 4 reads it as later drafts do."""
    if isinstance(schema, list):
        return [_draft4(item, schemas, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "examples":
            continue
        if key == "type" and value == "integer":
            # Draft 4 (the gateway's) counts 6366.0 as a number, not an integer; the API and the
            # OpenAPI 3.1 document accept it. An integral number is the same set in every draft.
            converted["type"] = "number"
            converted["multipleOf"] = 1
        elif key == "$ref":
            name = value.rsplit("/", 1)[1]
            if name not in definitions:
                definitions[name] = {}
                definitions[name] = _draft4(schemas[name], schemas, definitions)
            converted[key] = f"#/definitions/{name}"
        else:
            converted[key] = _draft4(value, schemas, definitions)
    return converted


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
