"""The Triton instances' root volume: the size the launch template gives it, and whether that holds the AMI.

EC2 refuses to launch an instance whose root volume is smaller than the AMI's root snapshot, and an Auto
Scaling group keeps retrying until CloudFormation times out. Check before deploying (Python 3.9+, stdlib):

    aws ec2 describe-images --image-ids ami-... --output json |
        python3 deploy/scripts/root_volume.py --instance-type g5.xlarge [--volume-size 0]

Prints the root volume size in GiB, or names the setting to change and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# What deploy/template.yaml's launch template does (tests/deploy checks that both agree).
TEMPLATE_DEVICE = "/dev/xvda"
GPU_PREFIXES = ("g4dn.", "g5.", "g6.")
CPU_DEFAULT_GIB = 60
GPU_DEFAULT_GIB = 100
# Below this the OS and the Triton -py3 image (~15 GB unpacked) do not fit together.
MINIMUM_GIB = 30


def root_volume_gib(instance_type: str, volume_size: int) -> int:
    """The root volume the launch template asks for: TritonVolumeSize, or the instance type's default."""
    if volume_size:
        return volume_size
    return GPU_DEFAULT_GIB if instance_type.startswith(GPU_PREFIXES) else CPU_DEFAULT_GIB


def problem(image: dict[str, Any], instance_type: str, volume_size: int) -> str | None:
    """Why instances of this AMI would fail to launch with these parameters, or None."""
    root = image.get("RootDeviceName")
    if root != TEMPLATE_DEVICE:
        return (
            f"AMI {image.get('ImageId')} boots from {root}, but the launch template sizes {TEMPLATE_DEVICE}: "
            "use an AMI whose root device is /dev/xvda (Amazon Linux 2023 and its Deep Learning AMIs)"
        )
    (mapping,) = [m for m in image.get("BlockDeviceMappings", []) if m.get("DeviceName") == root]
    snapshot = int(mapping["Ebs"]["VolumeSize"])
    size = root_volume_gib(instance_type, volume_size)
    if size < MINIMUM_GIB:
        return f"TritonVolumeSize {size} GiB cannot hold the Triton image: set at least {MINIMUM_GIB} (or 0)"
    if size < snapshot:
        return (
            f"TritonVolumeSize gives a {size} GiB root volume, but AMI {image.get('ImageId')}'s root "
            f"snapshot is {snapshot} GiB: set TritonVolumeSize to at least {snapshot} (or 0 for the default)"
        )
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instance-type", required=True, help="TritonInstanceType")
    parser.add_argument("--volume-size", type=int, default=0, help="TritonVolumeSize (0: the default)")
    args = parser.parse_args(argv)
    images = json.load(sys.stdin).get("Images", [])
    if len(images) != 1:
        print(f"expected one image from describe-images, got {len(images)}", file=sys.stderr)
        return 1
    found = problem(images[0], args.instance_type, args.volume_size)
    if found:
        print(found, file=sys.stderr)
        return 1
    print(root_volume_gib(args.instance_type, args.volume_size))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
