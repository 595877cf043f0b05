"""Fixtures for the deploy checks: the AWS tools live in .venv-deploy (built by ./dev.sh test from
deploy/requirements-tools.txt) and are run as subprocesses, offline. A missing tool fails the test."""

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
TOOLS_BIN = REPO_ROOT / ".venv-deploy" / "bin"
TEMPLATE = DEPLOY_DIR / "template.yaml"
BOOTSTRAP = DEPLOY_DIR / "bootstrap.yaml"

RunTool = Callable[..., subprocess.CompletedProcess[str]]


def tool_path(name: str) -> Path:
    """Path of a deploy tool in .venv-deploy; fails (never skips) when it is not installed."""
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: build the tools venv with `./dev.sh test`, or "
            f"`python3 -m venv .venv-deploy && .venv-deploy/bin/pip install -r deploy/requirements-tools.txt`"
        )
    return path


@pytest.fixture(scope="session")
def run_tool() -> RunTool:
    """Run a .venv-deploy tool offline (no telemetry, a fixed region, no credentials needed)."""
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "BC_SKIP_MAPPING": "TRUE",
        "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def run(name: str, *args: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
        command = [str(tool_path(name)), *map(str, args)]
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    return run


def _translate(run_tool: RunTool, template: Path) -> dict[str, Any]:
    result = run_tool("python", REPO_ROOT / "tests" / "deploy" / "translate_template.py", template)
    assert result.returncode == 0, f"translating {template.name} failed:\n{result.stderr}"
    translated: dict[str, Any] = json.loads(result.stdout)
    return translated


@pytest.fixture(scope="session")
def translated(run_tool: RunTool) -> dict[str, Any]:
    """deploy/template.yaml as the CloudFormation that `sam deploy` submits (translated offline)."""
    return _translate(run_tool, TEMPLATE)


@pytest.fixture(scope="session")
def bootstrap(run_tool: RunTool) -> dict[str, Any]:
    """deploy/bootstrap.yaml, parsed with SAM's YAML loader (short-form intrinsics become dicts)."""
    return _translate(run_tool, BOOTSTRAP)


@pytest.fixture(scope="session")
def checkov_report(run_tool: RunTool) -> dict[str, Any]:
    """checkov's JSON report for every template under deploy/ (run once per session; it takes seconds)."""
    result = run_tool(
        "checkov", "--directory", DEPLOY_DIR, "--framework", "cloudformation", "--skip-download",
        "--output", "json", "--soft-fail",
    )  # fmt: skip
    assert result.stdout.strip(), f"checkov printed no report:\n{result.stderr}"
    report = json.loads(result.stdout)
    # One framework gives one report object; checkov wraps several in a list.
    if isinstance(report, list):
        assert len(report) == 1, [r.get("check_type") for r in report]
        report = report[0]
    assert isinstance(report, dict)
    return report


TranslateWith = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def translate_with(run_tool: RunTool) -> TranslateWith:
    """deploy/template.yaml translated with parameter overrides (SAM resolves some of them while translating,
    as the CloudFormation-hosted transform does at deploy time); one translation per parameter set."""
    cache: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

    def translate(**parameters: str) -> dict[str, Any]:
        key = tuple(sorted(parameters.items()))
        if key not in cache:
            overrides = [f"{name}={value}" for name, value in key]
            script = REPO_ROOT / "tests" / "deploy" / "translate_template.py"
            result = run_tool("python", script, TEMPLATE, *overrides)
            assert result.returncode == 0, f"translating with {overrides} failed:\n{result.stderr}"
            cache[key] = json.loads(result.stdout)
        return cache[key]

    return translate
