"""The Triton launch template's user data, rendered as an instance would receive it."""

import re
from typing import Any

# Values for the template names the user data uses (Fn::Sub), as a deployed stack would fill them in.
SAMPLES = {
    "AWS::Region": "eu-west-1",
    "AWS::StackName": "triton-gateway",
    "TritonImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/triton-gateway/tritonserver:24.11-py3",
    "ModelBucket": "triton-gateway-models-example",
    "ModelPrefix": "models",
    "TritonLogGroup": "/triton-gateway/example/tritonserver",
    "TritonInstanceType": "g5.xlarge",
    "TritonTlsParameterPrefix": "/triton-gateway/triton-tls",
    "TritonResponseCacheBytes": "268435456",
    "TritonMetricsLogGroup": "/triton-gateway/example/triton-metrics",
    "TritonBootTimeoutSeconds": "1200",
}


def render_user_data(translated: dict[str, Any], **values: str) -> str:
    """The user data with SAMPLES (overridden by ``values``) substituted for the template's names."""
    data = translated["Resources"]["TritonLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    sub = data["UserData"]["Fn::Base64"]["Fn::Sub"]
    body: str = sub[0] if isinstance(sub, list) else sub
    samples = {**SAMPLES, **values}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):  # Fn::Sub's escape for a literal ${...}
            return "${" + name[1:] + "}"
        assert name in samples, f"user data uses ${{{name}}}: add a sample value for it"
        return samples[name]

    return re.sub(r"\$\{([^}]+)\}", substitute, body)
