"""What AWS refuses at create time, checked against the rendered template: Lambda's concurrency rule on young
accounts, and EC2's rule that a root volume holds the AMI's root snapshot."""

import json
import subprocess
import sys
from typing import Any

import pytest
from conftest import DEPLOY_DIR
from resolve_conditions import resolve

# https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html: a function can reserve up to
# the account's unreserved concurrency minus 100 ("for functions that don't have reserved concurrency"), and
# provisioned concurrency is allocated from the same pool and never beyond the function's reservation.
UNRESERVED_MINIMUM = 100
# New accounts start with a total concurrency of 10 or 50; 1,000 is the long-standing default.
ACCOUNT_LIMITS = [10, 50, 1000]


def concurrency(translated: dict[str, Any], **parameters: str) -> tuple[int, int]:
    """(reserved, provisioned) concurrency CloudFormation would ask Lambda for; 0 where none is set."""
    rendered = resolve(translated, **parameters)
    values = rendered["ParameterValues"]
    resources = rendered["Resources"]

    def number(value: Any) -> int:
        return int(values[value["Ref"]] if isinstance(value, dict) else value)

    reserved = resources["GatewayFunction"]["Properties"].get("ReservedConcurrentExecutions")
    (alias,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Alias"]
    provisioned = (
        alias["Properties"].get("ProvisionedConcurrencyConfig", {}).get("ProvisionedConcurrentExecutions")
    )
    return (number(reserved) if reserved is not None else 0, number(provisioned) if provisioned else 0)


def lambda_accepts(account_limit: int, reserved: int, provisioned: int) -> bool:
    if reserved and account_limit - reserved < UNRESERVED_MINIMUM:
        return False
    if provisioned:
        pool = reserved if reserved else account_limit - UNRESERVED_MINIMUM
        return provisioned <= pool
    return True


@pytest.mark.parametrize("account_limit", ACCOUNT_LIMITS)
def test_the_default_deploy_fits_every_account(translated: dict[str, Any], account_limit: int) -> None:
    reserved, provisioned = concurrency(translated)
    assert lambda_accepts(account_limit, reserved, provisioned), (
        f"a {account_limit}-concurrency account cannot reserve {reserved} (and provision {provisioned}): "
        f"Lambda keeps {UNRESERVED_MINIMUM} unreserved"
    )


def test_a_reservation_and_provisioned_concurrency_are_opt_in(translated: dict[str, Any]) -> None:
    # A reservation, when asked for, reaches the function as given; provisioned concurrency fits within it.
    assert concurrency(translated, GatewayReservedConcurrency="20", GatewayProvisionedConcurrency="2") == (
        20,
        2,
    )
    assert lambda_accepts(1000, 20, 2)
    assert not lambda_accepts(50, 20, 2), (
        "the rule this file checks the defaults with refuses what AWS refuses"
    )
    # Provisioned concurrency alone reserves nothing either.
    assert concurrency(translated, GatewayProvisionedConcurrency="2") == (0, 2)


# The AMIs the docs name, as `aws ec2 describe-images` shows their root device: Amazon Linux 2023 (the CPU
# default) and the Deep Learning Base OSS Nvidia Driver GPU AMI (Amazon Linux 2023) for GPU types.
def image(image_id: str, snapshot_gib: int) -> dict[str, Any]:
    return {
        "ImageId": image_id,
        "RootDeviceName": "/dev/xvda",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-0", "VolumeSize": snapshot_gib}},
        ],
    }


AL2023 = image("ami-0al2023000000000", 8)
GPU_BASE = image("ami-0dlamibase000000", 75)
ROOT_VOLUME_RULE = DEPLOY_DIR / "scripts" / "root_volume.py"


def root_volume(translated: dict[str, Any], ami: dict[str, Any], **parameters: str) -> int:
    """The size of the root volume instances of the rendered launch template boot with, from this AMI."""
    rendered = resolve(translated, **parameters)
    (launch_template,) = [
        r for r in rendered["Resources"].values() if r["Type"] == "AWS::EC2::LaunchTemplate"
    ]
    mappings = launch_template["Properties"]["LaunchTemplateData"].get("BlockDeviceMappings", [])
    (root,) = [m for m in ami["BlockDeviceMappings"] if m["DeviceName"] == ami["RootDeviceName"]]
    # EC2 merges the launch template's mapping over the AMI's: what it leaves out, the snapshot decides.
    override = next((m["Ebs"] for m in mappings if m["DeviceName"] == ami["RootDeviceName"]), {})
    size = override.get("VolumeSize", root["Ebs"]["VolumeSize"])
    return int(rendered["ParameterValues"][size["Ref"]] if isinstance(size, dict) else size)


@pytest.mark.parametrize(
    ("instance_type", "ami"),
    [("m6i.large", AL2023), ("g4dn.xlarge", GPU_BASE), ("g5.xlarge", GPU_BASE), ("g6.2xlarge", GPU_BASE)],
)
def test_the_root_volume_holds_the_ami_and_triton(
    translated: dict[str, Any], instance_type: str, ami: dict[str, Any]
) -> None:
    # GIVEN the documented pairing of instance type and AMI, with TritonVolumeSize left at its default
    size = root_volume(translated, ami, TritonInstanceType=instance_type)
    snapshot = ami["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
    # THEN EC2 can launch it (the volume holds the snapshot), with room for the ~15 GB Triton image
    assert size >= snapshot, (
        f"{instance_type}: a {size} GiB root volume cannot hold {ami['ImageId']}'s {snapshot}"
    )
    assert size - snapshot >= 20, f"{instance_type}: {size} GiB leaves too little room for the Triton image"


def run_rule(ami: dict[str, Any], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT_VOLUME_RULE), *arguments],
        input=json.dumps({"Images": [ami]}), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_the_pre_flight_rule_agrees_with_the_launch_template(translated: dict[str, Any]) -> None:
    # The rule a pre-flight check runs against the real AMI gives the size the template renders, for every
    # instance type and for the default and explicit sizes.
    for instance_type in translated["Parameters"]["TritonInstanceType"]["AllowedValues"]:
        for volume_size in ("0", "80", "200"):
            parameters = {"TritonInstanceType": instance_type, "TritonVolumeSize": volume_size}
            expected = root_volume(translated, AL2023, **parameters)
            result = run_rule(AL2023, "--instance-type", instance_type, "--volume-size", volume_size)
            assert (result.returncode, result.stdout.strip()) == (0, str(expected)), result.stderr


def test_the_pre_flight_rule_names_the_setting_when_the_volume_is_too_small() -> None:
    result = run_rule(GPU_BASE, "--instance-type", "g5.xlarge", "--volume-size", "60")
    assert result.returncode == 1
    assert "TritonVolumeSize" in result.stderr and "75" in result.stderr, result.stderr
    result = run_rule(AL2023, "--instance-type", "m6i.large", "--volume-size", "20")
    assert result.returncode == 1 and "TritonVolumeSize" in result.stderr, result.stderr
    sda1 = {**GPU_BASE, "RootDeviceName": "/dev/sda1"}
    sda1["BlockDeviceMappings"] = [{**GPU_BASE["BlockDeviceMappings"][0], "DeviceName": "/dev/sda1"}]
    result = run_rule(sda1, "--instance-type", "g5.xlarge")
    assert result.returncode == 1 and "/dev/xvda" in result.stderr, result.stderr
