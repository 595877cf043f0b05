"""The linters and scanners the issue asks for, run offline on deploy/, Dockerfile.lambda and the scripts."""

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from user_data import render_user_data

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
TEMPLATE = DEPLOY_DIR / "template.yaml"
BOOTSTRAP = DEPLOY_DIR / "bootstrap.yaml"
RunTool = Callable[..., subprocess.CompletedProcess[str]]

SCRIPTS = sorted((DEPLOY_DIR / "scripts").glob("*.sh"))


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.mark.parametrize("template", [TEMPLATE, BOOTSTRAP], ids=lambda p: p.name)
def test_sam_validate_lint(run_tool: RunTool, template: Path) -> None:
    result = run_tool("sam", "validate", "--lint", "--template-file", template, cwd=DEPLOY_DIR)
    assert result.returncode == 0, _output(result)


def test_cfn_lint(run_tool: RunTool) -> None:
    result = run_tool("cfn-lint", TEMPLATE, BOOTSTRAP)
    assert result.returncode == 0, _output(result)


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] > 0, summary
    assert failed == [], "\n".join(failed)


def test_every_checkov_skip_is_justified_inline(checkov_report: dict[str, Any]) -> None:
    # GIVEN the checks checkov skipped because of a Metadata.checkov.skip entry in a template
    skipped = checkov_report["results"]["skipped_checks"]
    # THEN each carries a one-line reason
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert reason.strip(), f"{check['check_id']} on {check['resource']} is skipped without a reason"
        assert "\n" not in reason.strip(), f"{check['check_id']}: keep the reason on one line"


def test_hadolint_dockerfile(run_tool: RunTool) -> None:
    result = run_tool("hadolint", REPO_ROOT / "Dockerfile.lambda")
    assert result.returncode == 0, _output(result)


def test_dockerfile_installs_the_lock_and_runs_mangum_handler() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile.lambda").read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.12\b", dockerfile, re.M)
    install = dockerfile[dockerfile.index("pip install") :].split("&&")[0]
    # Exactly the lock's files: hash-checked, and nothing pip would resolve beyond them.
    for flag in ("--require-hashes", "--no-deps", "requirements.lock", "--target"):
        assert flag in install, f"the image's pip install lacks {flag}"
    assert dockerfile.index("pip install") < dockerfile.index("COPY service/"), "dependency layer first"
    assert "compileall" in dockerfile, "ship service/'s bytecode: the task root is read-only at run time"
    assert re.search(r'^CMD \["service\.lambda_handler\.handler"\]$', dockerfile, re.M)
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ignored[ignored.index("*") :][:3] == ["*", "!requirements.lock", "!service/"]


def test_there_are_deploy_scripts() -> None:
    names = {script.name for script in SCRIPTS}
    assert {"push-triton-image.sh", "sync-models.sh", "deploy.sh", "show-endpoint.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_script(run_tool: RunTool, script: Path) -> None:
    result = run_tool("shellcheck", "--external-sources", script)
    assert result.returncode == 0, _output(result)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_strict_and_checks_prerequisites(script: Path) -> None:
    text = script.read_text()
    if script.name == "lib.sh":
        assert "command -v" in text
        return
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert re.search(r"^require (aws|docker|sam)\b", text, re.M), "check prerequisites before using them"


def test_shellcheck_rendered_user_data(run_tool: RunTool, translated: dict[str, Any], tmp_path: Path) -> None:
    # GIVEN the user data as the template defines it (the template is the only copy), rendered
    rendered = render_user_data(translated)
    script = tmp_path / "userdata.sh"
    script.write_text(rendered)
    # THEN it is strict bash that shellcheck accepts
    assert rendered.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in rendered
    result = run_tool("shellcheck", "--shell=bash", script)
    assert result.returncode == 0, _output(result) + "\n--- rendered user data\n" + rendered


def test_user_data_runs_triton_from_s3_with_restart_and_cloudwatch_logs(translated: dict[str, Any]) -> None:
    rendered = render_user_data(translated)
    assert "aws ecr get-login-password" in rendered
    assert "--restart unless-stopped" in rendered
    assert "--log-driver awslogs" in rendered
    assert "tritonserver --model-repository=" in rendered
    assert 'MODEL_REPOSITORY="s3://triton-gateway-models-example/models"' in rendered
