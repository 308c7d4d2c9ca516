"""The published contract (docs/openapi.json) is the one the code generates, and says what the API
really does: every route of the template, its real success status, errors in the API's shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from filebatch_local.openapi import build_document
from filebatch_local.template import Template
from tests.conftest import PROJECT_ROOT

DOCUMENT = build_document(PROJECT_ROOT / "template.yaml")
OPERATIONS = [(path, method, op) for path, ops in DOCUMENT["paths"].items() for method, op in ops.items()]


def test_the_committed_document_is_the_one_the_code_generates() -> None:
    committed = json.loads((PROJECT_ROOT / "docs" / "openapi.json").read_text())
    assert committed == DOCUMENT, "docs/openapi.json is stale: run `make openapi` and commit it"


def test_every_route_of_the_template_is_documented_and_nothing_else() -> None:
    routes = {(r.path, r.method.lower()) for r in Template(PROJECT_ROOT / "template.yaml", {}).routes()}
    assert {(path, method) for path, method, _ in OPERATIONS} == routes


@pytest.mark.parametrize(
    ("path", "method", "operation"), OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS]
)
def test_each_operation_documents_its_real_statuses_in_the_api_error_shape(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    statuses = set(operation["responses"])
    # The one success status the handler really answers (a read 200, a create 201, work accepted for
    # later 202), and no Powertools 422 (validation is a 400 here)
    [success] = [s for s in statuses if s.startswith("2")]
    assert success == "200" if method == "get" else success in {"201", "202"}
    assert "422" not in statuses
    assert {"400", "401", "429"} <= statuses
    for status in statuses - {success}:
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ApiError"}
    assert operation["summary"] and operation["description"]


def test_the_document_names_its_security_scheme_and_resolves_every_reference() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    assert DOCUMENT["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    text = json.dumps(DOCUMENT)
    schemas = DOCUMENT["components"]["schemas"]
    for reference in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert reference in schemas, f"dangling $ref {reference}"


def test_the_gateway_validates_every_request_body_with_the_handlers_own_model() -> None:
    # Given the models generated from the handlers, and the template's API
    from filebatch_local.openapi import request_models
    from filebatch_local.template import load_template

    generated = request_models(PROJECT_ROOT / "template.yaml")
    template = load_template(PROJECT_ROOT / "template.yaml")
    api = template["Resources"]["Api"]["Properties"]
    # Then the template's models are exactly the generated ones (else: paste `python -m
    # filebatch_local request-models template.yaml` under the Api's Models)
    assert api["Models"] == generated
    # And every route with a body validates it against its model
    bodies = {
        (path, method): _body_model(op["requestBody"]["content"]["application/json"]["schema"])
        for path, method, op in OPERATIONS
        if "requestBody" in op
    }
    assert bodies
    for resource in template["Resources"].values():
        for event in (resource.get("Properties") or {}).get("Events", {}).values():
            if event["Type"] != "Api":
                continue
            key = (event["Properties"]["Path"], event["Properties"]["Method"].lower())
            if key in bodies:
                operation = next(op for p, m, op in OPERATIONS if (p, m) == key)
                assert event["Properties"]["RequestModel"] == {
                    "Model": bodies[key],
                    "Required": operation["requestBody"].get("required", False),
                    "ValidateBody": True,
                }


def _body_model(schema: dict[str, Any]) -> str:
    """The model a body schema names (an optional body is `anyOf: [model, null]`)."""
    ref = schema.get("$ref") or next(s["$ref"] for s in schema["anyOf"] if "$ref" in s)
    return str(ref).rsplit("/", 1)[1]
