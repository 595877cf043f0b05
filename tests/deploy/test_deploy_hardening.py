"""Abuse protection, auth modes, TLS to Triton and deploy hygiene in the translated template (issue 10), each
checked for the parameter values that switch it on, not only for the defaults."""

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import TranslateWith
from resolve_conditions import resolve

KEYLESS = [
    ("/health", "get"),
    ("/docs", "get"),
    ("/docs/{proxy+}", "get"),
    ("/redoc", "get"),
    ("/openapi.json", "get"),
]
EXISTING_VPC = {"VpcId": "vpc-0123456789abcdef0", "PrivateSubnetIds": "subnet-0aaa,subnet-0bbb"}


def of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def methods(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    (api,) = of_type(template, "AWS::ApiGateway::RestApi").values()
    return {
        (path, method): operation
        for path, operations in api["Properties"]["Body"]["paths"].items()
        for method, operation in operations.items()
    }


def stage(template: dict[str, Any]) -> dict[str, Any]:
    (found,) = of_type(template, "AWS::ApiGateway::Stage").values()
    props: dict[str, Any] = found["Properties"]
    return props


# --- throttling --------------------------------------------------------------------------------------------
def test_stage_has_a_default_throttle(translated: dict[str, Any]) -> None:
    settings = stage(translated)["MethodSettings"]
    (default,) = [s for s in settings if (s["ResourcePath"], s["HttpMethod"]) == ("/*", "*")]
    assert default["ThrottlingRateLimit"] == {"Ref": "StageRateLimit"}
    assert default["ThrottlingBurstLimit"] == {"Ref": "StageBurstLimit"}
    assert default["MetricsEnabled"] is True


@pytest.mark.parametrize(("path", "method"), KEYLESS)
def test_each_keyless_route_has_its_own_throttle(translated: dict[str, Any], path: str, method: str) -> None:
    assert (path, method) in methods(translated), "the keyless route exists"
    assert not methods(translated)[(path, method)].get("security"), "and needs no key"
    # method settings name a resource with "/" written "~1"
    encoded = "/" + path.replace("/", "~1")
    matching = [
        s
        for s in stage(translated)["MethodSettings"]
        if s["ResourcePath"] == encoded and s["HttpMethod"] == method.upper()
    ]
    assert len(matching) == 1, f"no method setting for {encoded} {method.upper()}"
    (setting,) = matching
    assert setting["ThrottlingRateLimit"] == {"Ref": "KeylessRateLimit"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "KeylessBurstLimit"}
    # a method's entry replaces the stage default, so it must keep metrics and error logging itself
    assert (setting["MetricsEnabled"], setting["LoggingLevel"]) == (True, "ERROR")


def test_keyless_limits_are_below_the_stage_default(translated: dict[str, Any]) -> None:
    params = translated["Parameters"]
    assert int(params["KeylessRateLimit"]["Default"]) < int(params["StageRateLimit"]["Default"])
    assert int(params["KeylessBurstLimit"]["Default"]) < int(params["StageBurstLimit"]["Default"])
    assert int(params["ThrottleRateLimit"]["Default"]) <= int(params["StageRateLimit"]["Default"])


# --- WAF ---------------------------------------------------------------------------------------------------
def test_no_waf_by_default(translated: dict[str, Any]) -> None:
    created = resolve(translated)
    assert not [r for r in created["Resources"].values() if r["Type"].startswith("AWS::WAFv2::")]


def test_waf_rate_limits_per_ip_runs_aws_rules_and_guards_the_stage(translated: dict[str, Any]) -> None:
    created = resolve(translated, EnableWaf="true")
    (acl,) = of_type(created, "AWS::WAFv2::WebACL").values()
    props = acl["Properties"]
    assert props["Scope"] == "REGIONAL"
    assert props["DefaultAction"] == {"Allow": {}}
    rules = {rule["Name"]: rule for rule in props["Rules"]}
    rate = rules["rate-per-client-ip"]
    assert rate["Statement"]["RateBasedStatement"] == {
        "Limit": {"Ref": "WafRateLimit"},
        "AggregateKeyType": "IP",
    }
    assert rate["Action"] == {"Block": {}}
    managed = {
        r["Statement"]["ManagedRuleGroupStatement"]["Name"]: r
        for r in props["Rules"]
        if "ManagedRuleGroupStatement" in r["Statement"]
    }
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= set(managed)
    for rule in managed.values():
        assert rule["OverrideAction"] == {"None": {}}, "the groups' own actions apply (not only counted)"
    # images and tensors are bodies past 8 KB: the size rule must count, or every upload is blocked
    overrides = managed["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"][
        "RuleActionOverrides"
    ]
    assert {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}} in overrides
    assert len({r["Priority"] for r in props["Rules"]}) == len(props["Rules"])

    (association,) = of_type(created, "AWS::WAFv2::WebACLAssociation").values()
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": ["WebAcl", "Arn"]}
    arn = association["Properties"]["ResourceArn"]["Fn::Sub"]
    assert arn.endswith("::/restapis/${GatewayApi}/stages/${GatewayApiStage}"), arn

    (logging,) = of_type(created, "AWS::WAFv2::LoggingConfiguration").values()
    (destination,) = logging["Properties"]["LogDestinationConfigs"]
    assert destination["Fn::Sub"].endswith(":log-group:${WafLogGroup}")
    log_group = created["Resources"]["WafLogGroup"]["Properties"]
    assert log_group["LogGroupName"]["Fn::Sub"].startswith("aws-waf-logs-"), "WAF logs only to aws-waf-logs-*"
    redacted = {f["SingleHeader"]["Name"] for f in logging["Properties"]["RedactedFields"]}
    assert redacted == {"x-api-key", "authorization"}


# --- auth modes --------------------------------------------------------------------------------------------
def test_api_key_mode_has_no_sigv4(translated: dict[str, Any]) -> None:
    for key, operation in methods(translated).items():
        assert all("AWS_IAM" not in s for s in operation.get("security", [])), key
    assert "GatewayInvokePolicy" not in resolve(translated)["Resources"]


def test_iam_mode_signs_every_route_and_keeps_the_key_on_inference(translate_with: TranslateWith) -> None:
    iam = translate_with(AuthMode="AWS_IAM")
    (api,) = of_type(iam, "AWS::ApiGateway::RestApi").values()
    schemes = api["Properties"]["Body"]["components"]["securitySchemes"]
    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    keyless = set(KEYLESS)
    for key, operation in methods(iam).items():
        names = {name for requirement in operation["security"] for name in requirement}
        # keyless routes: the signature only; the rest: the signature and the usage plan's key
        assert names == ({"AWS_IAM"} if key in keyless else {"AWS_IAM", "api_key"}), key


def test_iam_mode_offers_callers_an_invoke_policy_for_this_stage(translate_with: TranslateWith) -> None:
    created = resolve(translate_with(AuthMode="AWS_IAM"), AuthMode="AWS_IAM")
    policy = created["Resources"]["GatewayInvokePolicy"]["Properties"]["PolicyDocument"]
    (statement,) = policy["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    assert statement["Resource"]["Fn::Sub"].endswith(":${GatewayApi}/${StageName}/*/*")
    assert created["Outputs"]["InvokePolicyArn"]["Value"] == {"Ref": "GatewayInvokePolicy"}


# --- TLS to Triton -----------------------------------------------------------------------------------------
def _gateway_env(template: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = template["Resources"]["GatewayFunction"]["Properties"]["Environment"]["Variables"]
    return env


def test_tls_is_off_by_default(translated: dict[str, Any]) -> None:
    env = _gateway_env(resolve(translated))
    assert (env["TRITON_GRPC_TLS"], env["TRITON_GRPC_TLS_CA"], env["TRITON_GRPC_TLS_SERVER_NAME"]) == (
        "false",
        "",
        "",
    )


def test_tls_option_sets_the_gateway_settings_and_keeps_the_nlb_a_tcp_pass_through(
    translated: dict[str, Any],
) -> None:
    created = resolve(translated, TritonTlsParameterPrefix="/triton-gateway/triton-tls")
    env = _gateway_env(created)
    assert env["TRITON_GRPC_TLS"] == "true"
    # the CA comes from Parameter Store at deploy time; the certificate is checked against the fixed name
    assert env["TRITON_GRPC_TLS_CA"] == {"Fn::Sub": "{{resolve:ssm:${TritonTlsParameterPrefix}/ca}}"}
    assert env["TRITON_GRPC_TLS_SERVER_NAME"] == {"Ref": "TritonTlsServerName"}
    (listener,) = of_type(created, "AWS::ElasticLoadBalancingV2::Listener").values()
    assert listener["Properties"]["Protocol"] == "TCP", "Triton terminates TLS, not the NLB"
    (group,) = of_type(created, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    assert group["Properties"]["Protocol"] == "TCP"


def test_user_data_reads_the_certificate_and_starts_triton_with_grpc_tls(translated: dict[str, Any]) -> None:
    from user_data import render_user_data

    rendered = render_user_data(translated)
    assert 'TLS_PARAMETER_PREFIX="/triton-gateway/triton-tls"' in rendered
    assert '--name "$TLS_PARAMETER_PREFIX/key" --with-decryption' in rendered
    flags = [f.split() for f in re.findall(r"tls_flags=\(([^)]*)\)", rendered)]
    assert flags == [
        [],
        [
            "--grpc-use-ssl=true",
            "--grpc-server-cert=/etc/triton-tls/server.crt",
            "--grpc-server-key=/etc/triton-tls/server.key",
        ],
    ], "empty unless TLS_PARAMETER_PREFIX is set"
    assert "--volume /etc/triton-tls:/etc/triton-tls:ro" in rendered
    assert '"${tls_flags[@]}"' in rendered and '"${tls_mount[@]}"' in rendered


# --- hygiene -----------------------------------------------------------------------------------------------
def test_account_wide_api_gateway_role_is_left_alone_by_default(translated: dict[str, Any]) -> None:
    assert translated["Parameters"]["ConfigureApiGatewayAccount"]["Default"] == "false"
    default = resolve(translated)["Resources"]
    assert "ApiGatewayAccount" not in default and "ApiGatewayCloudWatchRole" not in default
    opted_in = resolve(translated, ConfigureApiGatewayAccount="true")["Resources"]
    assert opted_in["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]
    }
    assert translated["Resources"]["ApiGatewayCloudWatchRole"]["DeletionPolicy"] == "Retain"


def test_bootstrap_stack_cannot_be_deleted_while_the_application_uses_it(
    translated: dict[str, Any], bootstrap: dict[str, Any]
) -> None:
    # CloudFormation refuses to delete a stack whose exports another stack imports.
    exports = {
        output["Export"]["Name"]["Fn::Sub"].replace("${AWS::StackName}", "${BootstrapStackName}")
        for output in bootstrap["Outputs"].values()
    }
    text = repr(translated["Resources"])
    imported = {e for e in exports if repr({"Fn::ImportValue": {"Fn::Sub": e}}) in text}
    assert "${BootstrapStackName}-GatewayRepositoryUri" in imported, "the image's repository is imported"
    assert bootstrap["Resources"]["GatewayRepository"]["Properties"]["EmptyOnDelete"] is True
    teardown = (Path(__file__).parents[2] / "deploy" / "scripts" / "teardown.sh").read_text()
    assert teardown.index("sam delete") < teardown.index('--stack-name "$BOOTSTRAP_STACK"')


def _triton_egress(template: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = template["Resources"]["TritonSecurityGroup"]["Properties"][
        "SecurityGroupEgress"
    ]
    return rules


def test_triton_egress_in_the_created_vpc_reaches_only_s3_and_the_endpoints(
    translated: dict[str, Any],
) -> None:
    rules = _triton_egress(resolve(translated, S3PrefixListId="pl-6da54004"))
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules} == {("tcp", 443, 443)}
    targets = sorted(
        (key, value)
        for r in rules
        for key, value in r.items()
        if key.startswith("Destination") or key == "CidrIp"
    )
    assert targets == [
        ("DestinationPrefixListId", {"Ref": "S3PrefixListId"}),
        ("DestinationSecurityGroupId", {"Ref": "EndpointSecurityGroup"}),
    ]
    # the endpoints' group accepts that traffic
    endpoint_ingress = translated["Resources"]["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["ToPort"]) for r in endpoint_ingress] == [(443, 443)]


def test_created_vpc_requires_the_s3_prefix_list(translated: dict[str, Any]) -> None:
    rule = translated["Rules"]["CreatedVpcNeedsS3PrefixList"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "VpcId"}, ""]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "S3PrefixListId"}, ""]}]}
    pattern = translated["Parameters"]["S3PrefixListId"]["AllowedPattern"]
    assert re.fullmatch(pattern, "pl-6da54004") and not re.fullmatch(pattern, "sg-6da54004")


def test_triton_egress_in_an_existing_vpc_is_https_only(translated: dict[str, Any]) -> None:
    rules = _triton_egress(resolve(translated, **EXISTING_VPC))
    assert rules == [
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "CidrIp": "0.0.0.0/0",
            "Description": rules[0]["Description"],
        }
    ]
    assert not [
        r for r in resolve(translated, **EXISTING_VPC)["Resources"].values() if r["Type"] == "AWS::EC2::VPC"
    ]
