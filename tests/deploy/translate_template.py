"""Translate a SAM template to CloudFormation offline and print it as JSON.

Run with the deploy-tools interpreter (.venv-deploy/bin/python), which has aws-sam-translator; the tests in
this folder call it as a subprocess so the gateway's own venv never needs the AWS tool chain.
Usage: translate_template.py TEMPLATE [KEY=VALUE ...]   (parameter overrides)
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# What `sam build` writes into an image function after building it; translation needs some ImageUri.
PLACEHOLDER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/triton-gateway/gateway:placeholder"


class OfflinePolicies:
    """Managed-policy loader that never calls IAM; SAM falls back to the AWS managed policy ARNs it ships."""

    def load(self) -> dict[str, str]:
        return {}


def translate(template_path: Path, parameters: dict[str, str]) -> dict[str, Any]:
    """The CloudFormation template `sam deploy` would submit, for the given parameter values."""
    # SAM resolves AWS::Region while translating; any region will do offline.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse(template_path.read_text())
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            props.setdefault("ImageUri", PLACEHOLDER_IMAGE)
    return transform(template, parameters, OfflinePolicies())  # type: ignore[arg-type]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    overrides = dict(arg.split("=", 1) for arg in argv[1:])
    json.dump(translate(Path(argv[0]), overrides), sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
