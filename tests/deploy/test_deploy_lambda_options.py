"""The gateway Lambda's options (issue 8): provisioned concurrency on an auto-published alias, and arm64."""

from pathlib import Path
from typing import Any

from conftest import TranslateWith
from resolve_conditions import resolve


def of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def alias(template: dict[str, Any]) -> dict[str, Any]:
    """The buffered routes' function's alias (the streaming one's: test_deploy_streaming.py)."""
    (found,) = [
        r
        for r in of_type(template, "AWS::Lambda::Alias").values()
        if r["Properties"]["FunctionName"] == {"Ref": "GatewayFunction"}
    ]
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
        if "responseTransferMode" not in operation["x-amazon-apigateway-integration"]
    }
    assert uris == {
        "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${GatewayFunctionAliaslive}/invocations"
    }
    permissions = of_type(translated, "AWS::Lambda::Permission").values()
    assert {p["Properties"]["FunctionName"]["Ref"] for p in permissions} == {
        "GatewayFunctionAliaslive",
        "GatewayStreamFunctionAliaslive",
    }


def test_no_provisioned_concurrency_by_default(translated: dict[str, Any]) -> None:
    assert translated["Parameters"]["GatewayProvisionedConcurrency"]["Default"] == 0
    assert "ProvisionedConcurrencyConfig" not in alias(resolve(translated))


def test_provisioned_concurrency_sits_on_the_alias(translated: dict[str, Any]) -> None:
    live = alias(resolve(translated, GatewayProvisionedConcurrency="2"))
    assert live["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": {"Ref": "GatewayProvisionedConcurrency"}
    }


def test_a_settings_change_publishes_a_new_version(translate_with: TranslateWith) -> None:
    # Provisioned concurrency warms the alias's version: a version that kept old settings would serve them.
    def version(template: dict[str, Any]) -> str:
        (name,) = [
            name
            for name, r in of_type(template, "AWS::Lambda::Version").items()
            if r["Properties"]["FunctionName"] == {"Ref": "GatewayFunction"}
        ]
        assert alias(template)["FunctionVersion"] == {"Fn::GetAtt": [name, "Version"]}
        return name

    # SAM fingerprints the template, not parameter values: a parameter change alone keeps the version...
    default = version(translate_with())
    assert version(translate_with(GatewayMemorySize="2048")) == default
    # ...so the revision parameter (deploy.sh fingerprints its parameters into it) moves it
    assert version(translate_with(GatewayMemorySize="2048", GatewayConfigRevision="5e1f")) != default
    assert version(translate_with(GatewayConfigRevision="1")) == default, "same revision, same version"


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
