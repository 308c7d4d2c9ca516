"""`lint-asl`: check the state machine files a template references by DefinitionUri.

cfn-lint does not open DefinitionUri files. Wrapped as the inline `Definition` of a plain
AWS::StepFunctions::StateMachine in a throwaway template, the document is checked by cfn-lint's
E3601 (state types, Next/StartAt targets, ...). The placeholders are also checked both ways
against DefinitionSubstitutions (CloudFormation leaves an unknown `${X}` in place silently).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from filebatch_local.template import DEFINITION_PLACEHOLDER, Template, TemplateError, substitute_definition

_STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


def lint_template_asl(template_path: Path) -> list[str]:
    """Problems found, as human-readable lines; empty when everything is fine."""
    try:
        template = Template(template_path)
    except TemplateError as error:
        return [f"{template_path}: {error}"]
    problems: list[str] = []
    for logical_id in template.logical_ids(*_STATE_MACHINE_TYPES):
        raw_properties = template.resource(logical_id).get("Properties") or {}
        if not isinstance(raw_properties.get("DefinitionUri"), str):
            continue
        problems += _lint_state_machine(template, logical_id)
    return problems


def _lint_state_machine(template: Template, logical_id: str) -> list[str]:
    properties = template.properties(logical_id)
    path = (template.root / properties["DefinitionUri"]).resolve()
    where = (
        f"{logical_id} ({path.relative_to(template.root) if path.is_relative_to(template.root) else path})"
    )
    if not path.is_file():
        return [f"{where}: DefinitionUri file not found"]
    text = path.read_text(encoding="utf-8")
    problems: list[str] = []

    # Substitution values come from the template's own intrinsics, resolved with local names, so
    # each has the shape (function ARN, bucket name, ...) CloudFormation would put there.
    substitutions = {k: str(v) for k, v in (properties.get("DefinitionSubstitutions") or {}).items()}
    placeholders = set(DEFINITION_PLACEHOLDER.findall(text))
    for missing in sorted(placeholders - set(substitutions)):
        problems.append(f"{where}: placeholder ${{{missing}}} has no DefinitionSubstitutions entry")
    for unused in sorted(set(substitutions) - placeholders):
        problems.append(f"{where}: DefinitionSubstitutions entry {unused} is not used in the file")

    try:
        substituted = substitute_definition(text, substitutions)
        definition: Any = (
            yaml.safe_load(substituted) if path.suffix in (".yaml", ".yml") else json.loads(substituted)
        )
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        return [*problems, f"{where}: not valid JSON/YAML after substitution: {error}"]

    problems += [f"{where}: {problem}" for problem in transition_problems(definition)]

    throwaway = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            logical_id: {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": f"arn:aws:iam::{template.account_id}:role/lint-asl",
                    "StateMachineType": str(properties.get("Type", "STANDARD")),
                    "Definition": definition,
                },
            }
        },
    }
    from cfnlint.api import lint

    for match in lint(json.dumps(throwaway, indent=1)):
        location = "/".join(str(p) for p in getattr(match, "path", []) or [])
        location = location.split("/Definition/", 1)[-1] if "/Definition/" in location else location
        problems.append(f"{where}: {match.rule.id} {match.message} [{location}]")
    return problems


def transition_problems(definition: Any, scope: str = "") -> list[str]:
    """Every StartAt/Next/Default/Choices[].Next/Catch[].Next names a state of its own scope (cfn-lint
    checks StartAt but not the others); nested Map/Parallel scopes are checked too."""
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict):
        return [f"{scope or 'top level'}: no States"]
    states: dict[str, Any] = definition["States"]
    problems = []

    def check(target: Any, where: str) -> None:
        if target is not None and target not in states:
            problems.append(f"{where}: {target!r} is not a state of {scope or 'the top level'}")

    check(definition.get("StartAt"), f"{scope}StartAt")
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        check(state.get("Next"), f"{scope}States/{name}/Next")
        check(state.get("Default"), f"{scope}States/{name}/Default")
        for index, choice in enumerate(state.get("Choices") or []):
            check(choice.get("Next"), f"{scope}States/{name}/Choices/{index}/Next")
        for index, catcher in enumerate(state.get("Catch") or []):
            check(catcher.get("Next"), f"{scope}States/{name}/Catch/{index}/Next")
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                problems += transition_problems(state[key], f"{scope}States/{name}/{key}/")
        for index, branch in enumerate(state.get("Branches") or []):
            problems += transition_problems(branch, f"{scope}States/{name}/Branches/{index}/")
    return problems


def main(template_path: Path) -> int:
    problems = lint_template_asl(template_path)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{template_path}: state machine definitions OK")
    return 1 if problems else 0
