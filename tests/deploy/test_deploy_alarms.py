"""Alarms, their SNS topic and the dashboard, as CloudFormation would create them (issue 9, section 3)."""

import json
import re
from typing import Any

import pytest
from resolve_conditions import resolve

TOPIC = {"Ref": "AlarmTopic"}
GATEWAY_DIMENSION = [{"Name": "service", "Value": "triton-gateway"}]
API_DIMENSIONS = [
    {"Name": "ApiName", "Value": {"Fn::Sub": "${AWS::StackName}-api"}},
    {"Name": "Stage", "Value": {"Ref": "StageName"}},
]
FUNCTION_DIMENSION = [{"Name": "FunctionName", "Value": {"Ref": "GatewayFunction"}}]

# alarm -> (namespace, metric, statistic, threshold, comparison, dimensions); docs/deploy.md's runbook table.
SINGLE_METRIC_ALARMS = {
    "ApiErrorRateAlarm": (
        "AWS/ApiGateway", "5XXError", "Average", 0.05, "GreaterThanOrEqualToThreshold", API_DIMENSIONS,
    ),
    "ApiLatencyAlarm": (
        "AWS/ApiGateway", "Latency", "p99", {"Ref": "ApiLatencyP99AlarmMs"}, "GreaterThanThreshold",
        API_DIMENSIONS,
    ),
    "GatewayErrorsAlarm": (
        "AWS/Lambda", "Errors", "Sum", 1, "GreaterThanOrEqualToThreshold", FUNCTION_DIMENSION,
    ),
    "GatewayThrottlesAlarm": (
        "AWS/Lambda", "Throttles", "Sum", 1, "GreaterThanOrEqualToThreshold", FUNCTION_DIMENSION,
    ),
    "TritonNoHealthyHostAlarm": (
        "AWS/NetworkELB", "HealthyHostCount", "Minimum", 1, "LessThanThreshold",
        [
            {"Name": "LoadBalancer", "Value": {"Fn::GetAtt": ["TritonNlb", "LoadBalancerFullName"]}},
            {"Name": "TargetGroup", "Value": {"Fn::GetAtt": ["TritonTargetGroup", "TargetGroupFullName"]}},
        ],
    ),
    "TritonUnavailableAlarm": (
        "TritonGateway", "TritonUnavailable", "Sum", 5, "GreaterThanOrEqualToThreshold", GATEWAY_DIMENSION,
    ),
    "TritonDeadlineAlarm": (
        "TritonGateway", "TritonDeadline", "Sum", 5, "GreaterThanOrEqualToThreshold", GATEWAY_DIMENSION,
    ),
    "TritonRejectedAlarm": (
        "TritonGateway", "TritonRejected", "Sum", 20, "GreaterThanOrEqualToThreshold", GATEWAY_DIMENSION,
    ),
}  # fmt: skip


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["Properties"]
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int | float | str) else value


@pytest.mark.parametrize("name", sorted(SINGLE_METRIC_ALARMS))
def test_single_metric_alarm(translated: dict[str, Any], name: str) -> None:
    namespace, metric, statistic, threshold, comparison, dimensions = SINGLE_METRIC_ALARMS[name]
    alarm = alarms(translated)[name]
    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
    assert alarm.get("Statistic", alarm.get("ExtendedStatistic")) == statistic
    assert _number(alarm["Threshold"]) == _number(threshold)
    assert alarm["ComparisonOperator"] == comparison
    assert alarm["Dimensions"] == dimensions
    assert alarm["AlarmActions"] == [TOPIC]
    assert alarm["OKActions"] == [TOPIC]
    assert int(alarm.get("DatapointsToAlarm", 1)) <= int(alarm["EvaluationPeriods"])


def _math(alarm: dict[str, Any]) -> tuple[dict[str, tuple[str, str, str]], str]:
    """The metric-math alarm's inputs (id -> namespace, metric, stat) and its one returned expression."""
    inputs = {
        m["Id"]: (
            m["MetricStat"]["Metric"]["Namespace"],
            m["MetricStat"]["Metric"]["MetricName"],
            m["MetricStat"]["Stat"],
        )
        for m in alarm["Metrics"]
        if "MetricStat" in m
    }
    returned = [m for m in alarm["Metrics"] if m.get("ReturnData")]
    assert len(returned) == 1 and "Expression" in returned[0], "exactly one returned expression"
    assert all(not m.get("ReturnData") for m in alarm["Metrics"] if "MetricStat" in m)
    expression = returned[0]["Expression"]
    return inputs, expression if isinstance(expression, str) else expression["Fn::Sub"]


def test_duration_alarm_divides_the_slowest_invocation_by_the_timeout(translated: dict[str, Any]) -> None:
    alarm = alarms(translated)["GatewayDurationAlarm"]
    inputs, expression = _math(alarm)
    assert inputs == {"duration": ("AWS/Lambda", "Duration", "Maximum")}
    # ms against the timeout parameter in seconds: 80 % of it
    assert expression == "duration / (${GatewayTimeout} * 1000)"
    assert float(alarm["Threshold"]) == 0.8
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [TOPIC]
    function = translated["Resources"]["GatewayFunction"]["Properties"]
    assert function["Timeout"] == {"Ref": "GatewayTimeout"}, "the alarm reads the timeout the function has"


def test_capacity_alarm_compares_in_service_with_desired(translated: dict[str, Any]) -> None:
    alarm = alarms(translated)["TritonCapacityAlarm"]
    inputs, expression = _math(alarm)
    assert inputs == {
        "desired": ("AWS/AutoScaling", "GroupDesiredCapacity", "Maximum"),
        "inservice": ("AWS/AutoScaling", "GroupInServiceInstances", "Minimum"),
    }
    assert expression == "desired - inservice"
    assert (float(alarm["Threshold"]), alarm["ComparisonOperator"]) == (0.0, "GreaterThanThreshold")
    assert alarm["AlarmActions"] == [TOPIC]
    # those group metrics exist only when the group publishes them
    asg = translated["Resources"]["TritonAutoScalingGroup"]["Properties"]
    published = {m for c in asg["MetricsCollection"] for m in c["Metrics"]}
    assert {"GroupDesiredCapacity", "GroupInServiceInstances"} <= published


def test_every_alarm_notifies_the_topic_and_is_tested(translated: dict[str, Any]) -> None:
    found = alarms(translated)
    assert set(found) == set(SINGLE_METRIC_ALARMS) | {"GatewayDurationAlarm", "TritonCapacityAlarm"}
    for name, alarm in found.items():
        assert alarm["AlarmActions"] == [TOPIC], name
        assert alarm["OKActions"] == [TOPIC], name
        assert alarm["AlarmDescription"], name
        assert alarm["TreatMissingData"] in {"notBreaching", "breaching", "missing"}, name
    # with no healthy host the NLB may publish nothing: that must count as breaching
    assert found["TritonNoHealthyHostAlarm"]["TreatMissingData"] == "breaching"


def test_gateway_metrics_namespace_and_service_match_the_lambda_settings(translated: dict[str, Any]) -> None:
    env = translated["Resources"]["GatewayFunction"]["Properties"]["Environment"]["Variables"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "TritonGateway"
    assert env["POWERTOOLS_SERVICE_NAME"] == "triton-gateway"
    for name, alarm in alarms(translated).items():
        if alarm.get("Namespace") == "TritonGateway":
            assert alarm["Dimensions"] == [{"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]}], name


def test_topic_accepts_only_this_accounts_cloudwatch(translated: dict[str, Any]) -> None:
    policy = translated["Resources"]["AlarmTopicPolicy"]["Properties"]
    assert policy["Topics"] == [TOPIC]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_email_subscription_only_when_an_address_is_given(translated: dict[str, Any]) -> None:
    default = resolve(translated)
    assert not [r for r in default["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"]
    with_mail = resolve(translated, AlarmEmail="oncall@example.com")
    (subscription,) = [r for r in with_mail["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"]
    assert subscription["Properties"] == {
        "TopicArn": TOPIC,
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert re.fullmatch(translated["Parameters"]["AlarmEmail"]["AllowedPattern"], "oncall@example.com")
    assert not re.fullmatch(translated["Parameters"]["AlarmEmail"]["AllowedPattern"], "not an address")


def _dashboard(translated: dict[str, Any]) -> dict[str, Any]:
    body = translated["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    samples = {
        "GatewayTimeout": "29",
        "ApiLatencyP99AlarmMs": "5000",
        "GatewayReservedConcurrency": "10",
        "TritonQueueTargetMs": "20",
    }

    def substitute(match: re.Match[str]) -> str:
        return samples.get(match.group(1), f"sample-{match.group(1)}")

    rendered: dict[str, Any] = json.loads(re.sub(r"\$\{([^}]+)\}", substitute, body))
    return rendered


def test_dashboard_is_valid_json_with_the_panels_on_call_needs(translated: dict[str, Any]) -> None:
    widgets = _dashboard(translated)["widgets"]
    titles = [w["properties"]["title"] for w in widgets]
    for wanted in ["Request rate", "Latency percentiles", "status class", "Triton latency", "Fleet health"]:
        assert any(wanted in title for title in titles), f"no panel for {wanted!r}: {titles}"
    metrics = {
        (row[0], row[1])
        for w in widgets
        for row in w["properties"].get("metrics", [])
        if isinstance(row[0], str) and row[0] not in {".", "..."}
    }
    assert {
        ("AWS/ApiGateway", "Count"),
        ("AWS/ApiGateway", "Latency"),
        ("TritonGateway", "TritonLatency"),
        ("AWS/NetworkELB", "HealthyHostCount"),
        ("AWS/AutoScaling", "GroupInServiceInstances"),
    } <= metrics
    # the timeout annotation is the parameter in ms (29 s -> 29000)
    duration = next(w for w in widgets if w["properties"]["title"].startswith("Lambda duration"))
    assert duration["properties"]["annotations"]["horizontal"][0]["value"] == 29000


def test_dashboard_shows_every_alarm(translated: dict[str, Any]) -> None:
    body = translated["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    shown = set(re.findall(r"\$\{(\w+)\.Arn\}", body))
    assert shown == set(alarms(translated))
