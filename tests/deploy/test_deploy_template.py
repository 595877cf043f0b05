"""Properties of the translated templates that the scanners do not (or cannot) check: what must hold for the
deployment to be secure by default and wired the way the gateway expects."""

import json
from typing import Any

import pytest
from resolve_conditions import resolve

INFERENCE_METHODS = [
    ("/infer", "post"),
    ("/v2", "get"),
    ("/v2", "post"),
    ("/v2/{proxy+}", "get"),
    ("/v2/{proxy+}", "post"),
    ("/{proxy+}", "x-amazon-apigateway-any-method"),
]
OPEN_METHODS = [
    ("/docs", "get"),
    ("/docs/{proxy+}", "get"),
    ("/redoc", "get"),
    ("/openapi.json", "get"),
    ("/health", "get"),
]
TRITON_PORTS = {8000, 8001}


def resources_of(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_}


def only(template: dict[str, Any], type_: str) -> dict[str, Any]:
    found = resources_of(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    props: dict[str, Any] = next(iter(found.values())).get("Properties", {})
    return props


def ref_target(template: dict[str, Any], value: Any) -> tuple[str, dict[str, Any]]:
    """What a ``{"Ref": name}`` (or ``Fn::GetAtt``) points at: ("Parameter", its declaration) or the
    resource's type and the resource. Fails when the value is no reference or names nothing."""
    assert isinstance(value, dict) and len(value) == 1, f"not a reference: {value!r}"
    name = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
    if name in template.get("Parameters", {}):
        return "Parameter", template["Parameters"][name]
    assert name in template["Resources"], f"{value!r} names no parameter or resource"
    resource: dict[str, Any] = template["Resources"][name]
    return resource["Type"], resource


def parameter_default(template: dict[str, Any], value: Any) -> Any:
    """The default of the parameter that ``value`` references (what a deploy gets unless overridden)."""
    kind, declaration = ref_target(template, value)
    assert kind == "Parameter", f"{value!r} is a {kind}, not a parameter"
    return declaration["Default"]


def api_paths(translated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = only(translated, "AWS::ApiGateway::RestApi")["Body"]["paths"]
    return paths


def test_translated_template_has_the_named_resources(
    translated: dict[str, Any], bootstrap: dict[str, Any]
) -> None:
    types = [r["Type"] for r in translated["Resources"].values()]
    for type_ in [
        "AWS::Lambda::Function",
        "AWS::ApiGateway::RestApi",
        "AWS::ApiGateway::Stage",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan",
        "AWS::ApiGateway::UsagePlanKey",
        "AWS::EC2::LaunchTemplate",
        "AWS::AutoScaling::AutoScalingGroup",
        "AWS::AutoScaling::ScalingPolicy",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "AWS::ElasticLoadBalancingV2::Listener",
        "AWS::IAM::InstanceProfile",
        "AWS::EC2::VPC",
        "AWS::Logs::LogGroup",
    ]:
        assert type_ in types, f"{type_} missing from the translated template"
    assert sorted(
        r["Type"] for r in bootstrap["Resources"].values() if r["Type"] != "AWS::S3::BucketPolicy"
    ) == [
        "AWS::ECR::Repository",
        "AWS::ECR::Repository",
        "AWS::S3::Bucket",
    ]


def test_created_network_is_private_with_the_endpoints_triton_needs(translated: dict[str, Any]) -> None:
    endpoints = resources_of(translated, "AWS::EC2::VPCEndpoint").values()
    # ServiceName is "com.amazonaws.${AWS::Region}.<service>"
    services = {e["Properties"]["ServiceName"]["Fn::Sub"].split("}.", 1)[1]: e for e in endpoints}
    assert set(services) == {
        "s3", "ecr.api", "ecr.dkr", "logs", "ssm", "ssmmessages", "ec2messages", "cloudformation",
    }  # fmt: skip
    assert services["s3"]["Properties"]["VpcEndpointType"] == "Gateway"
    for kind in ["AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::VPCEndpoint"]:
        for name, resource in resources_of(translated, kind).items():
            assert resource.get("Condition") == "CreateVpc", f"{name} must exist only when no VpcId is given"
    for kind in ["AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EIP"]:
        assert not resources_of(translated, kind), f"the created VPC has no way out to the internet ({kind})"
    for subnet in resources_of(translated, "AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False


def test_launch_template_enforces_imdsv2_without_ssh(translated: dict[str, Any]) -> None:
    # checkov cannot see IMDS settings of an instance without a launch template, so: no bare instances,
    # and the launch template requires session tokens.
    assert not resources_of(translated, "AWS::EC2::Instance")
    data = only(translated, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpEndpoint"] == "enabled"
    assert "KeyName" not in data, "no SSH key: use SSM Session Manager"
    assert "NetworkInterfaces" not in data, "no public IP association"
    assert all(m["Ebs"]["Encrypted"] is True for m in data["BlockDeviceMappings"])
    # ... and the Auto Scaling group launches its instances from that (only) launch template.
    asg = only(translated, "AWS::AutoScaling::AutoScalingGroup")
    kind, launch_template = ref_target(translated, asg["LaunchTemplate"]["LaunchTemplateId"])
    assert kind == "AWS::EC2::LaunchTemplate"
    assert launch_template["Properties"]["LaunchTemplateData"] is data


def _ingress_rules(translated: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rules = [
        (name, r["Properties"])
        for name, r in resources_of(translated, "AWS::EC2::SecurityGroupIngress").items()
    ]
    for name, group in resources_of(translated, "AWS::EC2::SecurityGroup").items():
        rules += [(name, rule) for rule in group["Properties"].get("SecurityGroupIngress", [])]
    return rules


def _covers(rule: dict[str, Any], port: int) -> bool:
    if str(rule["IpProtocol"]) == "-1":
        return True
    return int(rule["FromPort"]) <= port <= int(rule["ToPort"])


def _group_names(template: dict[str, Any], refs: list[Any]) -> set[str]:
    """The security groups a resource's list of references attaches (each checked to be a group)."""
    names = set()
    for ref in refs:
        assert ref_target(template, ref)[0] == "AWS::EC2::SecurityGroup", ref
        names.add(ref["Ref"])
    return names


def test_triton_ports_are_open_only_to_security_groups(translated: dict[str, Any]) -> None:
    # The groups as the resources attach them, not as named here: the Lambda's, the NLB's, the instances'.
    function = only(translated, "AWS::Lambda::Function")
    lambda_groups = _group_names(translated, function["VpcConfig"]["SecurityGroupIds"])
    nlb_groups = _group_names(
        translated, only(translated, "AWS::ElasticLoadBalancingV2::LoadBalancer")["SecurityGroups"]
    )
    launch_data = only(translated, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    triton_groups = _group_names(translated, launch_data["SecurityGroupIds"])
    assert lambda_groups and nlb_groups and triton_groups
    assert not (lambda_groups | nlb_groups) & triton_groups
    for name, rule in _ingress_rules(translated):
        for port in TRITON_PORTS | {22}:
            if not _covers(rule, port):
                continue
            assert port != 22, f"{name} opens port 22: Triton hosts are reached through SSM, not SSH"
            assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule), (
                f"{name}: CIDR ingress on {port}"
            )
            [source] = _group_names(translated, [rule["SourceSecurityGroupId"]])
            assert source in lambda_groups | nlb_groups, (
                f"{name}: port {port} only from the Lambda or the NLB"
            )
    # gRPC reaches the instances from both: the Lambda through the NLB, and the NLB's health checks.
    grpc_sources = {
        rule["SourceSecurityGroupId"]["Ref"]
        for _, rule in _ingress_rules(translated)
        if rule.get("GroupId", {}).get("Ref") in triton_groups and _covers(rule, 8001)
    }
    assert grpc_sources == lambda_groups | nlb_groups


def test_every_security_group_replaces_the_default_allow_all_egress(translated: dict[str, Any]) -> None:
    # EC2 gives a group without inline egress an allow-all rule; standalone egress resources do not remove it.
    assert not resources_of(translated, "AWS::EC2::SecurityGroupEgress")
    # (conditions evaluated for the default parameters: Triton's egress depends on the network)
    for name, group in resources_of(resolve(translated), "AWS::EC2::SecurityGroup").items():
        egress = group["Properties"].get("SecurityGroupEgress")
        assert egress, f"{name} keeps EC2's default allow-all egress"
        assert all(rule["IpProtocol"] == "tcp" for rule in egress), name
    # The Lambda's own group may reach Triton's gRPC port and nothing else.
    function = only(translated, "AWS::Lambda::Function")
    [gateway_group] = _group_names(translated, function["VpcConfig"]["SecurityGroupIds"])
    gateway = translated["Resources"][gateway_group]["Properties"]["SecurityGroupEgress"]
    assert {(rule["FromPort"], rule["ToPort"]) for rule in gateway} == {(8001, 8001)}


def test_triton_sits_behind_an_internal_nlb_with_a_readiness_health_check(translated: dict[str, Any]) -> None:
    nlb = only(translated, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert nlb["Type"] == "network"
    assert nlb["Scheme"] == "internal"
    listener = only(translated, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Protocol"], listener["Port"]) == ("TCP", 8001)
    target_group = only(translated, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (target_group["Protocol"], target_group["Port"]) == ("TCP", 8001)
    assert target_group["HealthCheckProtocol"] == "HTTP"
    assert target_group["HealthCheckPort"] == "8000"
    assert target_group["HealthCheckPath"] == "/v2/health/ready"
    policy = only(translated, "AWS::AutoScaling::ScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"


@pytest.mark.parametrize(("path", "method"), INFERENCE_METHODS)
def test_inference_methods_require_an_api_key(translated: dict[str, Any], path: str, method: str) -> None:
    operation = api_paths(translated)[path][method]
    assert operation.get("security") == [{"api_key": []}]


@pytest.mark.parametrize(("path", "method"), OPEN_METHODS)
def test_docs_and_health_need_no_api_key(translated: dict[str, Any], path: str, method: str) -> None:
    operation = api_paths(translated)[path][method]
    assert not operation.get("security")


def test_no_other_method_is_open(translated: dict[str, Any]) -> None:
    open_methods = {
        (path, method)
        for path, methods in api_paths(translated).items()
        for method, operation in methods.items()
        if not operation.get("security")
    }
    assert open_methods == set(OPEN_METHODS)


def test_usage_plan_binds_the_key_to_the_stage(translated: dict[str, Any]) -> None:
    stages = resources_of(translated, "AWS::ApiGateway::Stage")
    assert list(stages) == ["GatewayApiStage"], "one stage (OpenAPI 3 keeps SAM from adding 'Stage')"
    stage = stages["GatewayApiStage"]["Properties"]
    # The stage docs/deploy.md's URLs and the Lambda events use: /api/...
    assert parameter_default(translated, stage["StageName"]) == "api"
    plan = only(translated, "AWS::ApiGateway::UsagePlan")
    [api_stage] = plan["ApiStages"]
    assert ref_target(translated, api_stage["ApiId"])[0] == "AWS::ApiGateway::RestApi"
    assert ref_target(translated, api_stage["Stage"]) == ("AWS::ApiGateway::Stage", stages["GatewayApiStage"])
    assert stage["RestApiId"] == api_stage["ApiId"], "the plan's stage belongs to the plan's API"
    # The limits docs/deploy.md promises by default: 10 req/s, burst 20, 10,000 a day.
    throttle, quota = plan["Throttle"], plan["Quota"]
    assert parameter_default(translated, throttle["RateLimit"]) == 10
    assert parameter_default(translated, throttle["BurstLimit"]) == 20
    assert parameter_default(translated, quota["Limit"]) == 10000
    assert parameter_default(translated, quota["Period"]) == "DAY"
    plan_key = only(translated, "AWS::ApiGateway::UsagePlanKey")
    assert plan_key["KeyType"] == "API_KEY"
    kind, key = ref_target(translated, plan_key["KeyId"])
    assert kind == "AWS::ApiGateway::ApiKey"
    assert key["Properties"]["Enabled"] is True
    assert ref_target(translated, plan_key["UsagePlanId"])[0] == "AWS::ApiGateway::UsagePlan"
    # The output that show-endpoint.sh reads the key's value through is that same key.
    assert translated["Outputs"]["ApiKeyId"]["Value"] == plan_key["KeyId"]


def test_api_stage_logs_access_and_traces(translated: dict[str, Any]) -> None:
    stage = only(translated, "AWS::ApiGateway::Stage")
    assert stage["TracingEnabled"] is True
    destination = stage["AccessLogSetting"]["DestinationArn"]
    assert destination["Fn::GetAtt"][1] == "Arn"
    kind, group = ref_target(translated, destination)
    assert kind == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"]
    json.loads(stage["AccessLogSetting"]["Format"])  # CloudWatch Logs Insights wants JSON lines


def test_binary_media_types_cover_images_and_the_v2_binary_protocol(translated: dict[str, Any]) -> None:
    api = only(translated, "AWS::ApiGateway::RestApi")
    # tritonclient.http sends binary v2 requests without a Content-Type: only */* keeps their bytes intact.
    assert api["Body"]["x-amazon-apigateway-binary-media-types"] == ["*/*"]


def test_gateway_function_is_an_image_in_the_vpc_with_the_app_settings(translated: dict[str, Any]) -> None:
    function = only(translated, "AWS::Lambda::Function")
    assert function["PackageType"] == "Image"
    assert function["TracingConfig"] == {"Mode": "Active"}
    # docs/deploy.md's defaults: no reserved concurrency (young accounts cannot spare any), 1 GB; a timeout
    # API Gateway (29 s) would not cut short.
    assert (
        "ReservedConcurrentExecutions"
        not in resolve(translated)["Resources"]["GatewayFunction"]["Properties"]
    )
    assert parameter_default(translated, function["MemorySize"]) == 1024
    assert parameter_default(translated, function["Timeout"]) <= 29
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    kind, log_group = ref_target(translated, function["LoggingConfig"]["LogGroup"])
    assert kind == "AWS::Logs::LogGroup"
    assert "RetentionInDays" in log_group["Properties"]
    env = function["Environment"]["Variables"]
    # Triton is reached through the internal NLB's name, on the gRPC port its listener serves.
    [nlb_name] = resources_of(translated, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    listener = only(translated, "AWS::ElasticLoadBalancingV2::Listener")
    assert env["TRITON_GRPC_URL"] == {"Fn::Sub": f"${{{nlb_name}.DNSName}}:{listener['Port']}"}
    assert set(env) == {
        "TRITON_GRPC_URL",
        "DEFAULT_MODEL",
        "ALLOWED_MODELS",
        "TRITON_TIMEOUT_SECONDS",
        "API_ROOT_PATH",
        "LOG_LEVEL",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "TRITON_GRPC_TLS",
        "TRITON_GRPC_TLS_CA",
        "TRITON_GRPC_TLS_SERVER_NAME",
    }
    timeout = translated["Parameters"]["TritonTimeoutSeconds"]
    assert int(timeout["MaxValue"]) < int(translated["Parameters"]["GatewayTimeout"]["MaxValue"]) <= 29


def test_triton_role_reads_only_the_model_prefix_and_pulls_only_its_image(translated: dict[str, Any]) -> None:
    role = translated["Resources"]["TritonInstanceRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    actions = sorted(
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert actions == sorted(
        [
            "s3:ListBucket",
            "s3:GetObject",
            "ecr:GetAuthorizationToken",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "logs:DescribeLogStreams",
        ]
    )
    by_action = {
        a: s for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert by_action["s3:GetObject"]["Resource"]["Fn::Sub"][0].endswith("/${ModelPrefix}/*")
    # Listing only under the model prefix where a request names one (test_triton_s3_rehearsal.py evaluates
    # the condition against the calls Triton makes).
    assert by_action["s3:ListBucket"]["Condition"]["StringLikeIfExists"]["s3:prefix"]
    assert by_action["ecr:BatchGetImage"]["Resource"] != "*"
    # Triton's own log group and the one its metrics go to, each a log group of this stack.
    log_groups = by_action["logs:PutLogEvents"]["Resource"]
    assert [ref_target(translated, group)[0] for group in log_groups] == ["AWS::Logs::LogGroup"] * 2
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    ]


def test_bootstrap_repositories_and_bucket_are_locked_down(bootstrap: dict[str, Any]) -> None:
    # sam deploy re-pushes the gateway's image-id tag on every run; the Triton tag names one server for good.
    mutability = {"GatewayRepository": "MUTABLE", "TritonRepository": "IMMUTABLE"}
    for name, repository in resources_of(bootstrap, "AWS::ECR::Repository").items():
        props = repository["Properties"]
        assert props["ImageTagMutability"] == mutability[name], name
        assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}, name
        rule_text = props["LifecyclePolicy"]["LifecyclePolicyText"]["Fn::Sub"]
        rules = json.loads(rule_text.replace("${ImagesToKeep}", "10"))["rules"]
        assert rules[0]["selection"]["countType"] == "imageCountMoreThan", name
    bucket = only(bootstrap, "AWS::S3::Bucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert bootstrap["Resources"]["ModelBucket"]["Condition"] == "CreateModelBucket"
