"""The bootstrap stack's ECR repositories against a stand-in that speaks ECR's API (moto's server): each is
created with exactly the properties deploy/bootstrap.yaml renders, then takes the pushes a deploy makes.

`sam deploy` tags the gateway image `gatewayfunction-<image id>-python3.12` and pushes it on every run, so a
re-run after a failed deploy or a parameters-only deploy pushes that tag again. The layers it pushes are
compressed anew when the Docker that pushes them has no record of an earlier push (another machine or CI
runner, a pruned cache): the same image id then arrives under the same tag with a different manifest, which
an IMMUTABLE repository refuses (ImageTagAlreadyExistsException; real ECR refuses even an identical manifest,
aws/containers-roadmap#2179).
"""

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer
from resolve_conditions import resolve

from localdev.tritonserver import free_port

REGION = "us-east-1"
IMAGE_ID = "sha256:" + hashlib.sha256(b"the gateway image's config").hexdigest()
SAM_TAG = f"gatewayfunction-{IMAGE_ID.removeprefix('sha256:')[:12]}-python3.12"


@pytest.fixture(scope="module")
def ecr() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield boto3.client(
            "ecr",
            region_name=REGION,
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        server.stop()


def create_as_rendered(ecr: Any, bootstrap: dict[str, Any], logical_id: str) -> str:
    """Create the repository with every property the bootstrap template gives it; returns its name."""
    rendered = resolve(bootstrap)
    values: dict[str, str] = rendered["ParameterValues"]
    props = dict(rendered["Resources"][logical_id]["Properties"])

    def sub(value: Any) -> str:
        text = value["Fn::Sub"] if isinstance(value, dict) else value
        return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)

    props.pop("EmptyOnDelete")  # CloudFormation's own (it empties the repository on stack delete)
    name = sub(props.pop("RepositoryName"))
    arguments: dict[str, Any] = {
        "repositoryName": name,
        "imageTagMutability": props.pop("ImageTagMutability"),
        "imageScanningConfiguration": {"scanOnPush": props.pop("ImageScanningConfiguration")["ScanOnPush"]},
        "encryptionConfiguration": {"encryptionType": props.pop("EncryptionConfiguration")["EncryptionType"]},
    }
    lifecycle = sub(props.pop("LifecyclePolicy")["LifecyclePolicyText"])
    assert not props, f"{logical_id}: properties this test does not pass to ECR: {sorted(props)}"
    ecr.create_repository(**arguments)
    ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=lifecycle)
    return name


def manifest(config_digest: str, layers: list[bytes]) -> str:
    """A Docker image manifest: the image id is its config's digest, the layers as a push compressed them."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 7023,
                "digest": config_digest,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                }
                for layer in layers
            ],
        }
    )


def test_sam_can_push_its_image_tag_again(ecr: Any, bootstrap: dict[str, Any]) -> None:
    # GIVEN the gateway repository as bootstrap.yaml creates it, and a first deploy's push
    name = create_as_rendered(ecr, bootstrap, "GatewayRepository")
    first = manifest(IMAGE_ID, [b"layer compressed by the first push"])
    ecr.put_image(repositoryName=name, imageTag=SAM_TAG, imageManifest=first)
    # WHEN the deploy is run again from a Docker that compresses the same image's layers anew
    again = manifest(IMAGE_ID, [b"layer compressed by a later push"])
    ecr.put_image(repositoryName=name, imageTag=SAM_TAG, imageManifest=again)
    # THEN the push succeeds, and the tag still names the image id it carries
    (image,) = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": SAM_TAG}])["images"]
    assert json.loads(image["imageManifest"])["config"]["digest"] == IMAGE_ID


def test_a_triton_tag_keeps_naming_the_image_first_pushed(ecr: Any, bootstrap: dict[str, Any]) -> None:
    # Instances pull Triton by tag at every boot: a re-pointed tag would change a running fleet's server.
    name = create_as_rendered(ecr, bootstrap, "TritonRepository")
    ecr.put_image(repositoryName=name, imageTag="24.09-py3", imageManifest=manifest(IMAGE_ID, [b"upstream"]))
    other = manifest("sha256:" + hashlib.sha256(b"another server").hexdigest(), [b"other"])
    with pytest.raises(ClientError) as refused:
        ecr.put_image(repositoryName=name, imageTag="24.09-py3", imageManifest=other)
    assert refused.value.response["Error"]["Code"] in {
        "ImageTagAlreadyExistsException",
        "ImageAlreadyExistsException",
    }
