"""The SDK as a distribution of its own (sdk/pyproject.toml): what `pip install ./sdk` gets.

Nothing is installed: the import graph is checked in a subprocess that cannot see the server
package, and the wheel is built offline (no build isolation) from a copy of sdk/ and read.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import filebatch_sdk

SDK_DIR = Path(__file__).resolve().parents[2] / "sdk"
DECLARED_DEPENDENCIES = {"requests", "rich", "urllib3"}
# Extras: `pip install "./sdk[async]"` for AsyncFilebatchClient.
OPTIONAL_DEPENDENCIES = {"async": {"httpx"}}

# Run in a fresh interpreter: every sys.path entry from which the server package `filebatch`
# could be imported is dropped first (the venv's .pth file puts layers/filebatch on the path), so
# an import of it anywhere in the SDK fails instead of passing silently.
IMPORT_GRAPH_PROBE = """
import json, pathlib, sys
sys.path[:] = [p for p in sys.path if not (pathlib.Path(p or ".") / "filebatch" / "__init__.py").is_file()]
sys.path.insert(0, sys.argv[1])
try:
    import filebatch
    server_importable = True
except ModuleNotFoundError:
    server_importable = False
import filebatch_sdk, filebatch_sdk.cli, filebatch_sdk.client, filebatch_sdk.models
print(json.dumps({"server_importable": server_importable, "modules": sorted(sys.modules)}))
"""


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]


def _third_party_imports(package_dir: Path) -> set[str]:
    names: set[str] = set()
    for source in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", "filebatch_sdk"}


def test_sdk_and_cli_import_without_the_server_package() -> None:
    # Given an interpreter that cannot import the server package `filebatch`
    # When it imports the SDK and its command line
    probe = subprocess.run(
        [sys.executable, "-c", IMPORT_GRAPH_PROBE, str(SDK_DIR)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(probe.stdout)
    # Then the probe really hid the server package, and nothing of it (nor its AWS libraries) loaded
    assert report["server_importable"] is False
    loaded_roots = {name.split(".")[0] for name in report["modules"]}
    assert not loaded_roots & {"filebatch", "filebatch_local", "boto3", "botocore", "pydantic"}
    assert {"filebatch_sdk", "requests"} <= loaded_roots
    # And the optional extras are imported only by what needs them (AsyncFilebatchClient)
    assert "httpx" not in loaded_roots


def test_the_sdk_imports_only_its_declared_dependencies() -> None:
    # Given the SDK's sources and the dependencies sdk/pyproject.toml declares
    project = tomllib.loads((SDK_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_requirement_name(requirement) for requirement in project["dependencies"]}
    optional = {
        extra: {_requirement_name(requirement) for requirement in requirements}
        for extra, requirements in project["optional-dependencies"].items()
    }
    # When every third-party module the sources import is collected
    imported = _third_party_imports(SDK_DIR / "filebatch_sdk")
    # Then each of them is declared, and the declaration is what the project promises
    assert imported <= declared | set().union(*optional.values())
    assert declared == DECLARED_DEPENDENCIES
    assert optional == OPTIONAL_DEPENDENCIES


def test_the_console_script_is_the_cli_main() -> None:
    # Given the console scripts sdk/pyproject.toml declares
    scripts = tomllib.loads((SDK_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    # When the `filebatch` entry point is resolved
    module_name, _, attribute = scripts["filebatch"].partition(":")
    entry_point = getattr(importlib.import_module(module_name), attribute)
    # Then it is the function `python -m filebatch_sdk` runs
    assert entry_point is importlib.import_module("filebatch_sdk.cli").main


def test_the_wheel_ships_the_package_typed_with_its_dependencies_and_command(tmp_path: Path) -> None:
    # Given a copy of sdk/ (a setuptools build writes build/ and *.egg-info next to its sources)
    source = tmp_path / "sdk"
    shutil.copytree(SDK_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    # When a wheel is built from it, offline and without build isolation
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            str(source),
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        check=True,
    )
    (wheel_path,) = (tmp_path / "dist").glob("filebatch_sdk-*.whl")
    # Then it holds the SDK with py.typed and not a module of the server
    with zipfile.ZipFile(wheel_path) as wheel:
        names = set(wheel.namelist())
        dist_info = f"filebatch_sdk-{filebatch_sdk.__version__}.dist-info"
        metadata = HeaderParser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    packages = {name.split("/")[0] for name in names if not name.startswith(dist_info)}
    assert packages == {"filebatch_sdk"}
    assert {"filebatch_sdk/py.typed", "filebatch_sdk/cli.py", "filebatch_sdk/__main__.py"} <= names
    # And its metadata names the version, the dependencies with ranges, and the `filebatch` command
    assert metadata["Name"] == "filebatch-sdk"
    assert metadata["Version"] == filebatch_sdk.__version__
    requirements = metadata.get_all("Requires-Dist") or []
    required = [r for r in requirements if "extra ==" not in r]
    assert {_requirement_name(requirement) for requirement in required} == DECLARED_DEPENDENCIES
    assert {_requirement_name(r) for r in requirements if 'extra == "async"' in r} == {"httpx"}
    assert metadata.get_all("Provides-Extra") == ["async"]
    assert all("<" in requirement and ">=" in requirement for requirement in requirements)
    assert "filebatch = filebatch_sdk.cli:main" in entry_points
