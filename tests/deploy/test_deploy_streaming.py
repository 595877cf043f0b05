"""The streaming routes in the translated template: API Gateway streams them from their own function
(service.lambda_stream as its entry point, in the same image), and every other route stays buffered on the
Mangum function. See service/lambda_stream.py for the protocol and docs/deploy.md for the choice."""

import re
from typing import Any

from resolve_conditions import resolve

STREAM_URI = (
    "arn:aws:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/${GatewayStreamFunctionAliaslive}"
    "/response-streaming-invocations"
)
BUFFERED_URI = (
    "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${GatewayFunctionAliaslive}"
    "/invocations"
)
STREAMED = {
    ("/v2/models/{model}/generate_stream", "post"),
    ("/v2/models/{model}/versions/{version}/generate_stream", "post"),
    ("/v1/completions", "post"),
    ("/v1/chat/completions", "post"),
}


def integrations(translated: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    (api,) = [r for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    return {
        (path, method): operation["x-amazon-apigateway-integration"]
        for path, operations in api["Properties"]["Body"]["paths"].items()
        for method, operation in operations.items()
    }


def test_the_streaming_routes_stream_from_the_streaming_function(translated: dict[str, Any]) -> None:
    found = integrations(translated)
    assert set(found) >= STREAMED
    for route in STREAMED:
        integration = found[route]
        assert integration["type"] == "aws_proxy"
        assert integration["responseTransferMode"] == "STREAM", route
        # InvokeWithResponseStream, on the live alias
        assert integration["uri"] == {"Fn::Sub": STREAM_URI}, route
        # API Gateway streams for up to 15 minutes
        assert integration["timeoutInMillis"] == 900_000, route


def test_every_other_route_stays_buffered_on_the_mangum_function(translated: dict[str, Any]) -> None:
    others = {route: i for route, i in integrations(translated).items() if route not in STREAMED}
    assert others
    for route, integration in others.items():
        assert integration.get("responseTransferMode", "BUFFERED") == "BUFFERED", route
        assert integration["uri"] == {"Fn::Sub": BUFFERED_URI}, route


def test_api_gateway_may_invoke_the_streaming_alias_on_each_streaming_route(
    translated: dict[str, Any],
) -> None:
    granted = set()
    for resource in translated["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Lambda::Permission" and props["FunctionName"] == {
            "Ref": "GatewayStreamFunctionAliaslive"
        }:
            assert (props["Action"], props["Principal"]) == (
                "lambda:InvokeFunction",
                "apigateway.amazonaws.com",
            )
            arn, values = props["SourceArn"]["Fn::Sub"]
            assert values["__ApiId__"] == {"Ref": "GatewayApi"}
            granted.add(arn.rsplit("}/", 1)[1])
    # (a path parameter is "*" in the execute-api ARN)
    assert granted == {f"{method.upper()}{re.sub(r'{[^}]+}', '*', path)}" for path, method in STREAMED}


def test_the_streaming_function_is_the_same_image_with_its_own_entry_timeout_and_concurrency(
    translated: dict[str, Any],
) -> None:
    resources = resolve(translated)["Resources"]
    buffered = resources["GatewayFunction"]["Properties"]
    stream = resources["GatewayStreamFunction"]["Properties"]
    assert stream["PackageType"] == "Image" and stream["Code"] == buffered["Code"]
    # The image's CMD is the Mangum handler under the base image's runtime client; this one runs its own.
    assert stream["ImageConfig"] == {
        "EntryPoint": ["/var/lang/bin/python3", "-m"],
        "Command": ["service.lambda_stream"],
    }
    assert "ImageConfig" not in buffered
    # The same network, settings, architecture, memory, tracing and log format as the buffered function
    for key in ("VpcConfig", "Environment", "Architectures", "MemorySize", "TracingConfig"):
        assert stream[key] == buffered[key], key
    assert stream["LoggingConfig"]["LogFormat"] == "JSON"
    assert stream["LoggingConfig"]["LogGroup"] == {"Ref": "GatewayStreamLogGroup"}
    assert stream["Role"] == {"Fn::GetAtt": ["GatewayStreamFunctionRole", "Arn"]}
    # A stream may last 15 minutes; the buffered function keeps API Gateway's 29 s
    parameters = translated["Parameters"]
    assert stream["Timeout"] == {"Ref": "StreamTimeout"}
    assert int(parameters["StreamTimeout"]["MaxValue"]) == 900
    # Its own reservation when asked for (none by default, as the buffered function's)
    assert "ReservedConcurrentExecutions" not in stream
    reserved = resolve(translated, StreamReservedConcurrency="4")["Resources"]["GatewayStreamFunction"]
    assert reserved["Properties"]["ReservedConcurrentExecutions"] == {"Ref": "StreamReservedConcurrency"}
    # Its own live alias, a new version when anything changed, as the buffered function's
    (alias,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Alias"
        and r["Properties"]["FunctionName"] == {"Ref": "GatewayStreamFunction"}
    ]
    assert alias["Name"] == "live"
