"""The gateway Lambda's options (issue 8): provisioned concurrency on an auto-published alias, and arm64."""

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, TEMPLATE, RunTool
from resolve_conditions import resolve

TRANSLATE = REPO_ROOT / "tests" / "deploy" / "translate_template.py"


def of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def alias(template: dict[str, Any]) -> dict[str, Any]:
    (found,) = of_type(template, "AWS::Lambda::Alias").values()
    props: dict[str, Any] = found["Properties"]
    return props


def test_api_invokes_the_live_alias(translated: dict[str, Any]) -> None:
    live = alias(translated)
    assert live["Name"] == "live"
    assert live["FunctionName"] == {"Ref": "GatewayFunction"}
    (api,) = of_type(translated, "AWS::ApiGateway::RestApi").values()
    uris = {
        operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        for operations in api["Properties"]["Body"]["paths"].values()
        for operation in operations.values()
    }
    assert uris == {
        "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${GatewayFunctionAliaslive}/invocations"
    }
    permissions = of_type(translated, "AWS::Lambda::Permission").values()
    assert {p["Properties"]["FunctionName"]["Ref"] for p in permissions} == {"GatewayFunctionAliaslive"}


def test_no_provisioned_concurrency_by_default(translated: dict[str, Any]) -> None:
    assert translated["Parameters"]["GatewayProvisionedConcurrency"]["Default"] == 0
    assert "ProvisionedConcurrencyConfig" not in alias(resolve(translated))


def test_provisioned_concurrency_sits_on_the_alias(translated: dict[str, Any]) -> None:
    live = alias(resolve(translated, GatewayProvisionedConcurrency="2"))
    assert live["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": {"Ref": "GatewayProvisionedConcurrency"}
    }


REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/triton-gateway/gateway"
# What `sam deploy` writes into the template it submits: the pushed image, tagged with its local image id.
IMAGE_A = f"{REPOSITORY}:gatewayfunction-0a1b2c3d4e5f-python3.12"
IMAGE_B = f"{REPOSITORY}:gatewayfunction-9f8e7d6c5b4a-python3.12"


@pytest.fixture(scope="module")
def deployed(run_tool: RunTool, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """The CloudFormation template a `sam deploy` of this image and these parameters submits (the SAM
    transform runs with the parameter values, as CloudFormation's hosted transform does)."""
    folder = tmp_path_factory.mktemp("packaged")

    def translate(image: str, **parameters: str) -> dict[str, Any]:
        text = TEMPLATE.read_text()
        marker = "      PackageType: Image\n"
        assert text.count(marker) == 1
        packaged = folder / f"template-{len(list(folder.iterdir()))}.yaml"
        packaged.write_text(text.replace(marker, f"{marker}      ImageUri: {image}\n"))
        overrides = [f"{name}={value}" for name, value in sorted(parameters.items())]
        result = run_tool("python", TRANSLATE, packaged, *overrides)
        assert result.returncode == 0, result.stderr
        translated: dict[str, Any] = json.loads(result.stdout)
        return translated

    return translate


@pytest.fixture(scope="module")
def version_create_only(run_tool: RunTool) -> list[str]:
    """AWS::Lambda::Version's create-only properties from its CloudFormation resource schema (the copy
    cfn-lint ships): CloudFormation replaces the version, that is publishes a new one, when one changes."""
    code = (
        "import json; from cfnlint.schema import PROVIDER_SCHEMA_MANAGER as m; "
        "schema = m.get_resource_schema('us-east-1', 'AWS::Lambda::Version').schema; "
        "print(json.dumps(schema['createOnlyProperties']))"
    )
    result = run_tool("python", "-c", code)
    assert result.returncode == 0, result.stderr
    paths: list[str] = json.loads(result.stdout)
    assert "/properties/Description" in paths
    return [path.removeprefix("/properties/") for path in paths]


def live_version(
    template: dict[str, Any], parameters: dict[str, str], create_only: list[str]
) -> tuple[str, dict[str, Any]]:
    """The logical id of the version the live alias points at, and that version's create-only properties as
    CloudFormation resolves them: a change in either makes CloudFormation publish a new version."""
    (name,) = of_type(template, "AWS::Lambda::Version")
    assert alias(template)["FunctionVersion"] == {"Fn::GetAtt": [name, "Version"]}
    values = {n: str(p.get("Default", "")) for n, p in template["Parameters"].items()} | parameters
    properties = template["Resources"][name]["Properties"]
    return name, {key: substitute(properties.get(key), values) for key in create_only}


def substitute(value: Any, parameters: dict[str, str]) -> Any:
    """The value with the parameters' values in place of their `Ref`s and `Fn::Sub` references."""
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parameters:
        return parameters[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{(\w+)\}", lambda m: parameters.get(m.group(1), m.group(0)), value["Fn::Sub"])
    if isinstance(value, dict):
        return {key: substitute(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, parameters) for item in value]
    return value


def function_configuration(template: dict[str, Any], parameters: dict[str, str]) -> Any:
    values = {n: str(p.get("Default", "")) for n, p in template["Parameters"].items()} | parameters
    props = template["Resources"]["GatewayFunction"]["Properties"]
    return {key: substitute(value, values) for key, value in props.items()}


def test_a_new_image_moves_the_live_alias_to_a_new_version(
    deployed: Callable[..., dict[str, Any]], version_create_only: list[str]
) -> None:
    # GIVEN a deploy, then a code-only redeploy: same parameters, the new image sam deploy pushed
    first = live_version(deployed(IMAGE_A), {}, version_create_only)
    again = live_version(deployed(IMAGE_A), {}, version_create_only)
    code_only = live_version(deployed(IMAGE_B), {}, version_create_only)
    # THEN the same inputs keep the version (no churn), and the new image gets a version of its own
    assert again == first
    assert code_only[0] != first[0], "a code-only redeploy leaves the live alias on the old image"


# Stand-ins for the commands deploy.sh runs: `sam` records its arguments, `aws` answers what the script asks.
STUBS = {
    "sam": 'printf "%s\\n" "$@" > "$STUB_LOG.$1"\n',
    "docker": "exit 0\n",
    "aws": """case "$*" in
    *describe-managed-prefix-lists*) echo pl-63a5400a ;;
    *get-account*) echo arn:aws:iam::123456789012:role/apigateway-logs ;;
    *"ssm get-parameter"*) echo ami-0123456789abcdef0 ;;
    *) echo stub-value ;;
esac
""",
}


def deploy_script_parameters(folder: Path, *overrides: str) -> dict[str, str]:
    """The --parameter-overrides deploy/scripts/deploy.sh hands `sam deploy`, run with these overrides."""
    stubs = folder / "bin"
    stubs.mkdir(exist_ok=True)
    for command, body in STUBS.items():
        (stubs / command).write_text(f"#!/usr/bin/env bash\n{body}")
        (stubs / command).chmod(0o755)
    log = folder / "sam"
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log)}
    env |= {"AWS_REGION": "us-east-1"}
    script = REPO_ROOT / "deploy" / "scripts" / "deploy.sh"
    command = ["bash", str(script), "--parameter-overrides", *overrides]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    arguments = Path(f"{log}.deploy").read_text().splitlines()
    given = arguments[arguments.index("--parameter-overrides") + 1 :]
    return dict(argument.split("=", 1) for argument in given)


@pytest.mark.parametrize(
    ("name", "before", "after"),
    [
        ("DefaultModel", "densenet_onnx", "resnet50"),
        ("GatewayMemorySize", "1024", "2048"),
        # deploy.sh fingerprints every parameter, this one too, though the function does not use it
        ("TritonMaxSize", "2", "3"),
    ],
)
def test_a_settings_change_moves_the_live_alias_to_a_new_version(
    deployed: Callable[..., dict[str, Any]],
    version_create_only: list[str],
    tmp_path: Path,
    name: str,
    before: str,
    after: str,
) -> None:
    # GIVEN two deploys of the same image whose parameters differ in one setting, each with the parameters
    # deploy.sh gives sam deploy (its fingerprint of them in GatewayConfigRevision)
    def deploy(value: str) -> tuple[dict[str, Any], dict[str, str]]:
        parameters = deploy_script_parameters(tmp_path, f"{name}={value}")
        assert parameters[name] == value
        return deployed(IMAGE_A, **parameters), parameters

    (old, old_parameters), (new, new_parameters) = deploy(before), deploy(after)
    # THEN the live alias's version is a new one (a new logical id, or a create-only property CloudFormation
    # replaces the version for)...
    now, then = (
        live_version(new, new_parameters, version_create_only),
        live_version(old, old_parameters, version_create_only),
    )
    assert now != then
    # ...and the function's configuration changed too, so Lambda's PublishVersion publishes a new number
    # rather than answering with the version the alias already has
    assert function_configuration(new, new_parameters) != function_configuration(old, old_parameters)
    # AND the same parameters again keep the version
    assert live_version(deploy(after)[0], new_parameters, version_create_only) == now


def test_architecture_is_a_parameter_defaulting_to_x86_64(translated: dict[str, Any]) -> None:
    parameter = translated["Parameters"]["GatewayArchitecture"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("x86_64", ["arm64", "x86_64"])
    function = translated["Resources"]["GatewayFunction"]["Properties"]
    assert function["Architectures"] == [{"Ref": "GatewayArchitecture"}]


def test_deploy_script_fingerprints_its_parameters_into_the_revision() -> None:
    script = (Path(__file__).parents[2] / "deploy" / "scripts" / "deploy.sh").read_text()
    fingerprint = script.index("GatewayConfigRevision=$revision")
    # after every value the script adds itself, before sam build/deploy receive them
    assert script.index('overrides+=("S3PrefixListId=') < fingerprint
    assert script.index('overrides+=("ConfigureApiGatewayAccount=true")') < fingerprint
    assert fingerprint < script.index("\nsam build ") < script.index("\nsam deploy ")
    assert 'sam build --region "$region" --parameter-overrides "${overrides[@]}"' in script
