"""The pinned AMI and the cheaper options, checked on the template as SAM translates it and as CloudFormation
would resolve its conditions; the cheaper variants also pass sam validate --lint and cfn-lint."""

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from resolve_conditions import resolve
from test_deploy_option_scans import with_defaults

TEMPLATE = Path(__file__).parents[2] / "deploy" / "template.yaml"
RunTool = Callable[..., subprocess.CompletedProcess[str]]
EXISTING_VPC = {"VpcId": "vpc-0123456789abcdef0", "PrivateSubnetIds": "subnet-0aaa,subnet-0bbb"}


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def interface_endpoint_subnets(template: dict[str, Any]) -> dict[str, int]:
    endpoints = of_type(template, "AWS::EC2::VPCEndpoint")
    return {
        name: len(r["Properties"]["SubnetIds"])
        for name, r in endpoints.items()
        if r["Properties"]["VpcEndpointType"] == "Interface"
    }


def test_the_ami_is_a_plain_id_not_resolved_again_on_every_update(translated: dict[str, Any]) -> None:
    # GIVEN the parameters as CloudFormation receives them
    parameters = translated["Parameters"]
    # THEN none is an SSM-resolved type (CloudFormation resolves those again on every update, so a new public
    # AMI would replace every instance during a gateway-only deploy); the AMI is an id the deploy passes
    resolved_by_ssm = [n for n, p in parameters.items() if p["Type"].startswith("AWS::SSM::Parameter::Value")]
    assert resolved_by_ssm == []
    assert parameters["TritonAmiId"]["Type"] == "AWS::EC2::Image::Id"
    assert "Default" not in parameters["TritonAmiId"], "no region-specific id can be a default"
    launch = translated["Resources"]["TritonLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert launch["ImageId"] == {"Ref": "TritonAmiId"}


def test_interface_endpoints_in_one_az_halve_them(translated: dict[str, Any]) -> None:
    default = interface_endpoint_subnets(resolve(translated))
    one_az = interface_endpoint_subnets(resolve(translated, InterfaceEndpointAzs="1"))
    # 7 endpoints x 2 AZs at $0.01 an hour each is the largest idle cost; one AZ halves it.
    assert len(default) == 7 and set(default.values()) == {2}
    assert one_az.keys() == default.keys() and set(one_az.values()) == {1}
    resolved = resolve(translated, InterfaceEndpointAzs="1")
    for name in one_az:
        assert resolved["Resources"][name]["Properties"]["SubnetIds"] == [{"Ref": "PrivateSubnetA"}]


def test_an_existing_vpc_has_no_endpoints_at_all(translated: dict[str, Any]) -> None:
    resolved = resolve(translated, **EXISTING_VPC)
    assert of_type(resolved, "AWS::EC2::VPCEndpoint") == {}
    assert of_type(resolved, "AWS::EC2::VPC") == {}


def test_no_dashboard_removes_it_and_its_output_and_keeps_the_alarms(translated: dict[str, Any]) -> None:
    default = resolve(translated)
    without = resolve(translated, EnableDashboard="false")
    assert len(of_type(default, "AWS::CloudWatch::Dashboard")) == 1
    assert of_type(without, "AWS::CloudWatch::Dashboard") == {}
    assert "DashboardUrl" in default["Outputs"] and "DashboardUrl" not in without["Outputs"]
    alarms = of_type(default, "AWS::CloudWatch::Alarm")
    assert of_type(without, "AWS::CloudWatch::Alarm").keys() == alarms.keys()


CHEAPER = {
    "endpoints-one-az": {"InterfaceEndpointAzs": '"1"'},
    "no-dashboard": {"EnableDashboard": '"false"'},
    "all-cheaper": {"InterfaceEndpointAzs": '"1"', "EnableDashboard": '"false"'},
    "existing-vpc-no-dashboard": {**EXISTING_VPC, "EnableDashboard": '"false"'},
}


@pytest.fixture(params=sorted(CHEAPER))
def cheaper(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / request.param / "template.yaml"
    path.parent.mkdir()
    path.write_text(with_defaults(TEMPLATE.read_text(), CHEAPER[request.param]))
    return path


def test_cheaper_variants_pass_sam_validate_and_cfn_lint(run_tool: RunTool, cheaper: Path) -> None:
    result = run_tool("cfn-lint", cheaper)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_tool("sam", "validate", "--lint", "--template-file", cheaper, cwd=cheaper.parent)
    assert result.returncode == 0, result.stdout + result.stderr
