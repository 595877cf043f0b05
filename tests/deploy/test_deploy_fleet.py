"""The fleet in deploy/ (issue 11, section 3): updates that keep capacity with a readiness signal, draining on
deregistration, scaling on Triton's own queue time (the CloudWatch agent's scrape of its Prometheus metrics,
checked against a real tritonserver's /metrics), and the response-cache option."""

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from resolve_conditions import resolve
from user_data import render_user_data


def _iso_minutes(duration: str) -> int:
    match = re.fullmatch(r"PT(\d+)M", duration)
    assert match, duration
    return int(match.group(1))


def test_rolling_update_keeps_one_triton_in_service_and_waits_for_readiness(
    translated: dict[str, Any],
) -> None:
    asg = translated["Resources"]["TritonAutoScalingGroup"]
    rolling = asg["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["MaxBatchSize"] == 1
    assert rolling["MinInstancesInService"] >= 1
    assert rolling["WaitOnResourceSignals"] is True
    assert {"HealthCheck", "ReplaceUnhealthy", "AZRebalance"} <= set(rolling["SuspendProcesses"])
    # CloudFormation needs MinInstancesInService < MaxSize to start the replacement first
    assert int(translated["Parameters"]["TritonMaxSize"]["MinValue"]) > rolling["MinInstancesInService"]
    creation = asg["CreationPolicy"]["ResourceSignal"]
    assert creation["Count"] == {"Ref": "TritonDesiredCapacity"}
    # the user data gives up (and signals failure) before CloudFormation stops waiting: the user data runs
    # to its deadline in test_triton_instance_rehearsal.py, which also compares these timeouts with it
    longest_boot = int(translated["Parameters"]["TritonBootTimeoutSeconds"]["MaxValue"])
    assert longest_boot < 60 * _iso_minutes(rolling["PauseTime"])
    assert longest_boot < 60 * _iso_minutes(creation["Timeout"])


def test_user_data_signals_success_only_after_triton_is_ready(translated: dict[str, Any]) -> None:
    rendered = render_user_data(translated)
    assert 'STACK="triton-gateway"' in rendered
    (call,) = re.findall(r"/opt/aws/bin/cfn-signal [^\n]*\\\n[^\n]*", rendered)
    assert '--stack "$STACK"' in call and '--region "$REGION"' in call
    resource = re.search(r"--resource (\w+)", call)
    assert resource and resource.group(1) == "TritonAutoScalingGroup"
    assert resource.group(1) in translated["Resources"]
    ready = rendered.index("curl -sf --max-time 5 -o /dev/null http://127.0.0.1:8000/v2/health/ready")
    assert rendered.index("signal 0") > ready > rendered.index("tritonserver --model-repository")
    # any failure before that reports 1 through the EXIT trap; success clears the trap first
    assert "trap report_failure EXIT" in rendered and "signal 1" in rendered
    assert rendered.index("trap - EXIT") > rendered.index("signal 0")
    # the readiness path is the one the NLB checks
    (group,) = [r for r in translated["Resources"].values() if r["Type"].endswith("::TargetGroup")]
    assert group["Properties"]["HealthCheckPath"] == "/v2/health/ready"


def test_created_vpc_lets_instances_reach_cloudformation_for_the_signal(translated: dict[str, Any]) -> None:
    endpoint = translated["Resources"]["CloudFormationEndpoint"]
    assert endpoint["Condition"] == "CreateVpc"
    assert endpoint["Properties"]["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.cloudformation"}
    assert endpoint["Properties"]["PrivateDnsEnabled"] is True
    assert endpoint["Properties"]["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]


def test_nlb_drains_for_the_deadline_then_closes_connections(translated: dict[str, Any]) -> None:
    (group,) = [r for r in translated["Resources"].values() if r["Type"].endswith("::TargetGroup")]
    attributes = {a["Key"]: a["Value"] for a in group["Properties"]["TargetGroupAttributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == {"Ref": "GatewayTimeout"}
    assert attributes["deregistration_delay.connection_termination.enabled"] == "true"
    # no call outlives the Lambda, and the Triton deadline is below it
    params = translated["Parameters"]
    assert int(params["TritonTimeoutSeconds"]["MaxValue"]) < int(params["GatewayTimeout"]["MaxValue"])
    # Triton gets time to finish in-flight work after SIGTERM
    assert "--stop-timeout 40" in render_user_data(translated)


def _policy(template: dict[str, Any]) -> dict[str, Any]:
    (policy,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::AutoScaling::ScalingPolicy"]
    props: dict[str, Any] = policy["Properties"]
    return props


def test_scaling_tracks_triton_queue_time_per_inference_by_default(translated: dict[str, Any]) -> None:
    policy = _policy(resolve(translated))
    assert policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingConfiguration"]
    assert config["TargetValue"] == {"Ref": "TritonQueueTargetMs"}
    metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
    for metric_id, name in [
        ("queue", "nv_inference_queue_duration_us"),
        ("served", "nv_inference_request_success"),
    ]:
        stat = metrics[metric_id]["MetricStat"]
        assert stat["Metric"]["Namespace"] == "TritonServer"
        assert stat["Metric"]["MetricName"] == name
        assert stat["Metric"]["Dimensions"] == [{"Name": "Fleet", "Value": {"Ref": "AWS::StackName"}}]
        assert stat["Stat"] == "Sum"
        assert metrics[metric_id]["ReturnData"] is False
    (returned,) = [m for m in metrics.values() if m.get("ReturnData")]
    # microseconds per inference -> ms; an idle fleet reads 0 (and scales in), never "no data"
    assert returned["Expression"] == "queue / (served + 1) / 1000"


def test_cpu_is_the_fallback_target(translated: dict[str, Any]) -> None:
    config = _policy(resolve(translated, TritonScalingMetric="CPU"))["TargetTrackingConfiguration"]
    assert config == {
        "TargetValue": {"Ref": "TritonCpuTargetPercent"},
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
    }


def _agent(rendered: str) -> tuple[dict[str, Any], str]:
    agent = re.search(r"<<AGENT\n(.*?)\nAGENT\n", rendered, re.S)
    prometheus = re.search(r"<<PROMETHEUS\n(.*?)\nPROMETHEUS\n", rendered, re.S)
    assert agent and prometheus
    return json.loads(agent.group(1)), prometheus.group(1)


def test_cloudwatch_agent_sends_what_the_policy_reads(translated: dict[str, Any]) -> None:
    rendered = render_user_data(translated)
    agent, prometheus = _agent(rendered)
    assert '- targets: ["127.0.0.1:8002"]' in prometheus, "Triton's metrics port"
    assert 'Fleet: "$STACK"' in prometheus
    config = agent["logs"]["metrics_collected"]["prometheus"]
    assert config["log_group_name"] == "$METRICS_LOG_GROUP"
    assert 'METRICS_LOG_GROUP="/triton-gateway/example/triton-metrics"' in rendered
    emf = config["emf_processor"]
    assert emf["metric_namespace"] == "TritonServer"
    selected = {
        selector.strip("^$"): declaration["dimensions"]
        for declaration in emf["metric_declaration"]
        for selector in declaration["metric_selectors"]
    }
    for metric in ["nv_inference_queue_duration_us", "nv_inference_request_success", "nv_gpu_utilization"]:
        assert ["Fleet"] in selected[metric], metric
    # the instance may write exactly there
    role = translated["Resources"]["TritonInstanceRole"]["Properties"]
    resources = [s["Resource"] for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert [
        {"Fn::GetAtt": ["TritonLogGroup", "Arn"]},
        {"Fn::GetAtt": ["TritonMetricsLogGroup", "Arn"]},
    ] in resources


def test_response_cache_is_off_by_default_and_sized_by_the_parameter(translated: dict[str, Any]) -> None:
    assert translated["Parameters"]["TritonResponseCacheBytes"]["Default"] == 0
    off = render_user_data(translated, TritonResponseCacheBytes="0")
    on = render_user_data(translated, TritonResponseCacheBytes="268435456")
    for rendered in (off, on):
        assert 'if [ "$CACHE_BYTES" -gt 0 ]; then' in rendered
        assert 'cache_flags=(--cache-config="local,size=$CACHE_BYTES")' in rendered
        assert '"${tls_flags[@]}" "${cache_flags[@]}"' in rendered
    assert 'CACHE_BYTES="0"' in off and 'CACHE_BYTES="268435456"' in on


@pytest.fixture
def triton_as_deployed(translated: dict[str, Any], triton_factory: Any) -> Any:
    """A real Triton with a model loaded and the cache flag the user data passes for a 1 MiB cache."""
    rendered = render_user_data(translated, TritonResponseCacheBytes="1048576")
    (flag,) = re.findall(r'cache_flags=\((--cache-config="[^"]+")\)', rendered)
    value = flag.replace('"', "").replace("$CACHE_BYTES", "1048576")
    return triton_factory(models=["densenet_onnx"], extra_args=[value])


def _scrape(url: str) -> str:
    # Triton opens its metrics port after its HTTP endpoint answers ready: give it a few seconds.
    for _ in range(50):
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return str(answer.read().decode())
        except ConnectionRefusedError:
            pass
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError):
                raise
        time.sleep(0.1)
    raise AssertionError(f"Triton's metrics endpoint never answered: {url}")


def test_agent_selects_metrics_a_real_triton_exports_as_counters(
    translated: dict[str, Any], triton_as_deployed: Any
) -> None:
    text = _scrape(triton_as_deployed.metrics_url)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    agent, _ = _agent(render_user_data(translated))
    declarations = agent["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"]
    selectors = [s for d in declarations for s in d["metric_selectors"]]
    gpu_only = {"^nv_gpu_utilization$"}  # no GPU here
    missing = [s for s in selectors if s not in gpu_only and not any(re.match(s, name) for name in types)]
    assert missing == [], f"selectors that match nothing Triton 2.51 exports: {missing}"
    # the agent turns counters into per-scrape deltas, which is what the policy's Sum over a minute needs
    assert types["nv_inference_queue_duration_us"] == "counter"
    assert types["nv_inference_request_success"] == "counter"
    # and the cache the flag configured exists
    assert "nv_cache_num_entries" in types
