"""The Triton instance role's policy statements as a deployed stack would hold them: the translated template
with its conditions evaluated and every intrinsic function resolved to sample values."""

import re
from typing import Any

from resolve_conditions import resolve
from user_data import SAMPLES

PARTITION = "aws"
ACCOUNT = "123456789012"
# Fn::ImportValue names (after Fn::Sub) -> what the bootstrap stack exports.
EXPORTS = {
    "ModelBucketName": SAMPLES["ModelBucket"],
    "TritonRepositoryArn": (
        f"arn:aws:ecr:{SAMPLES['AWS::Region']}:{ACCOUNT}:repository/triton-gateway/tritonserver"
    ),
    "TritonRepositoryUri": SAMPLES["TritonImage"].rsplit(":", 1)[0],
}


def resolve_intrinsics(node: Any, values: dict[str, str]) -> Any:
    """``node`` with Ref, Fn::Sub, Fn::Join, Fn::ImportValue and Fn::GetAtt replaced by strings."""
    if isinstance(node, list):
        return [resolve_intrinsics(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) != 1 or not next(iter(node)).startswith(("Ref", "Fn::")):
        return {key: resolve_intrinsics(value, values) for key, value in node.items()}
    ((function, args),) = node.items()
    if function == "Ref":
        return values[args]
    if function == "Fn::Sub":
        text, local = (args, {}) if isinstance(args, str) else args
        names = {**values, **{k: str(resolve_intrinsics(v, values)) for k, v in local.items()}}
        return re.sub(r"\$\{([^}!]+)\}", lambda m: str(names[m.group(1)]), text)
    if function == "Fn::Join":
        separator, items = args
        return separator.join(str(i) for i in resolve_intrinsics(items, values))
    if function == "Fn::ImportValue":
        name = resolve_intrinsics(args, values)
        stack_prefix = values["BootstrapStackName"] + "-"
        assert name.startswith(stack_prefix), name
        return EXPORTS[name[len(stack_prefix) :]]
    if function == "Fn::GetAtt":
        resource, attribute = args if isinstance(args, list) else args.split(".", 1)
        return f"arn:{PARTITION}:sample:{SAMPLES['AWS::Region']}:{ACCOUNT}:{resource}/{attribute}"
    raise AssertionError(f"{function} is not resolved here")


def instance_policy_statements(translated: dict[str, Any], **parameters: str) -> list[dict[str, Any]]:
    """Every statement of the instance role's inline policies, resolved (managed policies are left out)."""
    template = resolve(translated, **parameters)
    values = {
        **template["ParameterValues"],
        "AWS::Partition": PARTITION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Region": SAMPLES["AWS::Region"],
        "AWS::StackName": SAMPLES["AWS::StackName"],
        "AWS::URLSuffix": "amazonaws.com",
    }
    role = template["Resources"]["TritonInstanceRole"]["Properties"]
    documents = [resolve_intrinsics(policy["PolicyDocument"], values) for policy in role["Policies"]]
    return [statement for document in documents for statement in document["Statement"]]
