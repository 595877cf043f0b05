"""checkov and cfn-lint see a template with its parameter defaults, and checkov drops resources whose
condition is false for them: optional resources (WAF, IAM invoke policy, e-mail subscription, ...) would
never be scanned. Scan copies of the template whose defaults switch the options on, too."""

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TEMPLATE = Path(__file__).parents[2] / "deploy" / "template.yaml"
RunTool = Callable[..., subprocess.CompletedProcess[str]]

ALL_OPTIONS_ON = {
    "EnableWaf": '"true"',
    "AuthMode": "AWS_IAM",
    "TritonTlsParameterPrefix": "/triton-gateway/triton-tls",
    "AlarmEmail": "oncall@example.com",
    "ConfigureApiGatewayAccount": '"true"',
    "S3PrefixListId": "pl-6da54004",
    "GatewayProvisionedConcurrency": "2",
    "GatewayArchitecture": "arm64",
    "TritonResponseCacheBytes": "268435456",
}
EXISTING_VPC = {
    **ALL_OPTIONS_ON,
    "VpcId": "vpc-0123456789abcdef0",
    "PrivateSubnetIds": "subnet-0aaa,subnet-0bbb",
    "TritonScalingMetric": "CPU",
}
VARIANTS = {"all-options-on": ALL_OPTIONS_ON, "existing-vpc": EXISTING_VPC}


def with_defaults(text: str, defaults: dict[str, str]) -> str:
    """The template text with these parameters' Default lines replaced."""
    for name, value in defaults.items():
        pattern = re.compile(rf"(^  {name}:\n(?:    .*\n)*?    Default: ).*$", re.M)
        text, count = pattern.subn(lambda m, v=value: m.group(1) + v, text, count=1)
        assert count == 1, f"parameter {name} has no Default line"
    return text


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / request.param / "template.yaml"
    path.parent.mkdir()
    path.write_text(with_defaults(TEMPLATE.read_text(), VARIANTS[request.param]))
    return path


def test_checkov_finds_no_failed_check_with_the_options_on(run_tool: RunTool, variant: Path) -> None:
    result = run_tool(
        "checkov", "--file", variant, "--framework", "cloudformation", "--skip-download",
        "--output", "json", "--soft-fail",
    )  # fmt: skip
    report: Any = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]]
    assert report["summary"]["parsing_errors"] == 0
    assert failed == [], "\n".join(failed)
    scanned = {c["resource"] for c in report["results"]["passed_checks"]}
    if variant.parent.name == "all-options-on":
        assert "AWS::WAFv2::WebACL.WebAcl" in scanned, "the optional resources were scanned"


def test_cfn_lint_with_the_options_on(run_tool: RunTool, variant: Path) -> None:
    result = run_tool("cfn-lint", variant)
    assert result.returncode == 0, result.stdout + result.stderr
