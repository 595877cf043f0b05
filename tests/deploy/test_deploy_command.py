"""`./dev.sh deploy` and the deploy scripts, run for real under stand-ins for aws, sam and docker
(fake_cli.py: each call recorded, each answer a canned AWS CLI answer with --query applied), with the
oldest bash there is here (macOS's 3.2.57 when old_bash.py has it) as `bash` on PATH, so nested scripts
use it too."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from old_bash import bash_3_2

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "deploy" / "scripts"
FAKE_CLI = Path(__file__).with_name("fake_cli.py")
AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
DLAMI = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-amazon-linux-2023/latest/ami-id"
NO_STACK = {
    "exit": 254,
    "stderr": "An error occurred (ValidationError): Stack with id triton-gateway does not exist",
}
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/api/"


def stack(
    status: str, parameters: dict[str, str] | None = None, outputs: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "json": {
            "Stacks": [
                {
                    "StackStatus": status,
                    "Parameters": [
                        {"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()
                    ],
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()],
                }
            ]
        }
    }


DEPLOYED = stack(
    "UPDATE_COMPLETE",
    {"TritonAmiId": "ami-0deployed", "TritonInstanceType": "m6i.large", "ConfigureApiGatewayAccount": "true"},
    {"ApiUrl": API_URL, "ApiKeyId": "key123", "GatewayFunctionName": "triton-gateway-GatewayFunction-X"},
)


def image(root: str = "/dev/xvda", arch: str = "x86_64", size: int = 8) -> dict[str, Any]:
    mappings = [{"DeviceName": root, "Ebs": {"VolumeSize": size}}]
    found = {
        "ImageId": "ami-0x",
        "RootDeviceName": root,
        "Architecture": arch,
        "BlockDeviceMappings": mappings,
    }
    return {"json": {"Images": [found]}}


def instance_type(vcpus: int) -> dict[str, Any]:
    found = {"VCpuInfo": {"DefaultVCpus": vcpus}, "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]}}
    return {"json": {"InstanceTypes": [found]}}


def lambda_account(total: int, unreserved: int) -> dict[str, Any]:
    return {
        "json": {
            "AccountLimit": {"ConcurrentExecutions": total, "UnreservedConcurrentExecutions": unreserved}
        }
    }


def good_account() -> dict[str, Any]:
    """An account where a default deploy goes through: no application stack yet, the bootstrap stack up."""
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    return {
        "sts get-caller-identity": {"json": {"Account": "123456789012"}},
        "cloudformation describe-stacks triton-gateway-bootstrap": stack(
            "CREATE_COMPLETE",
            {},
            {
                "GatewayRepositoryUri": f"{REGISTRY}/triton-gateway/gateway",
                "TritonRepositoryUri": f"{REGISTRY}/triton-gateway/tritonserver",
                "ModelBucketName": "models-bucket",
            },
        ),
        "cloudformation describe-stacks triton-gateway": NO_STACK,
        "cloudformation deploy": {},
        "cloudformation describe-stack-events": {
            "json": {
                "StackEvents": [
                    {
                        "LogicalResourceId": "TritonAutoScalingGroup",
                        "ResourceStatus": "CREATE_FAILED",
                        "ResourceStatusReason": "Received 0 SUCCESS signal(s) out of 1",
                    },
                ]
            }
        },
        "cloudformation delete-stack triton-gateway": {
            "then": {"cloudformation describe-stacks triton-gateway": NO_STACK}
        },
        "cloudformation wait": {},
        "ec2 describe-instance-types m6i.large": instance_type(2),
        "ec2 describe-instance-types g5.xlarge": instance_type(4),
        "ec2 describe-availability-zones": {
            "json": {"AvailabilityZones": [{"ZoneName": z, "State": "available"} for z in zones]}
        },
        "ec2 describe-instance-type-offerings": {
            "json": {"InstanceTypeOfferings": [{"Location": z} for z in zones]}
        },
        "ec2 describe-managed-prefix-lists": {"json": {"PrefixLists": [{"PrefixListId": "pl-63a5400a"}]}},
        "ec2 describe-images ami-0latest": image(),
        "ec2 describe-images ami-0deployed": image(),
        "ec2 describe-images ami-0gpu": image(size=75),
        "ssm get-parameter " + AL2023: {"json": {"Parameter": {"Value": "ami-0latest"}}},
        "ssm get-parameter " + DLAMI: {"json": {"Parameter": {"Value": "ami-0gpu"}}},
        "lambda get-account-settings": lambda_account(1000, 1000),
        "lambda get-function-concurrency": {"json": {"ReservedConcurrentExecutions": 10}},
        "apigateway get-account": {"json": {"throttleSettings": {}}},
        "apigateway get-api-key": {"json": {"value": "the-key-value"}},
        "service-quotas get-service-quota L-1216C47A": {"json": {"Quota": {"Value": 32.0}}},
        "service-quotas get-service-quota L-DB2E81BA": {"json": {"Quota": {"Value": 64.0}}},
        "ecr describe-images": {"exit": 254, "stderr": "An error occurred (ImageNotFoundException)"},
        "ecr get-login-password": {"stdout": "password"},
        "s3 sync": {},
        "docker info": {},
        "docker pull": {},
        "docker tag": {},
        "docker login": {},
        "docker push": {},
        "sam build": {},
        "sam deploy": {"then": {"cloudformation describe-stacks triton-gateway": DEPLOYED}},
    }


class Deploy:
    """Runs the deploy scripts against a world of canned answers and reads back the calls they made."""

    def __init__(self, tmp: Path, bash: Path) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for tool in ("aws", "sam", "docker"):
            shim = self.bin / tool
            shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CLI}" {tool} "$@"\n')
            shim.chmod(0o755)
        (self.bin / "bash").symlink_to(bash)
        self.bash = bash
        self.world_file = tmp / "world.json"
        self.log = tmp / "calls.jsonl"
        self.models = tmp / "models"
        (self.models / "tiny" / "1").mkdir(parents=True)
        (self.models / "tiny" / "config.pbtxt").write_text('name: "tiny"\n')
        self.world = good_account()

    def run(self, command: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        self.world_file.write_text(json.dumps(self.world))
        self.log.write_text("")
        env = {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.bin.parent),
            "AWS_REGION": "us-east-1",
            "FAKE_CLI_WORLD": str(self.world_file),
            "FAKE_CLI_LOG": str(self.log),
            "MODELS_DIR": str(self.models),
            "STACK_POLL_SECONDS": "0",
        }
        script = command[0]
        argv = [str(self.bash), script, *command[1:]] if script.endswith(".sh") else command
        result = subprocess.run(
            argv,
            cwd=REPO_ROOT,
            env=env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.world = json.loads(self.world_file.read_text())
        return result

    def script(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run([str(SCRIPTS / name), *args])

    def calls(self, *prefix: str) -> list[list[str]]:
        """The recorded calls whose first words are PREFIX (e.g. "aws", "cloudformation")."""
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [c for c in calls if c[: len(prefix)] == list(prefix)]

    def index(self, *prefix: str) -> int:
        """Position of the first call starting with PREFIX among all calls (fails when there is none)."""
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return next(i for i, c in enumerate(calls) if c[: len(prefix)] == list(prefix))


def overrides_of(call: list[str]) -> dict[str, str]:
    values = call[call.index("--parameter-overrides") + 1 :]
    return dict(v.split("=", 1) for v in values if not v.startswith("--"))


def out(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.fixture(scope="session")
def oldest_bash() -> Path:
    """bash 3.2 when it can be had, else this machine's bash (the bash-3.2-only test skips then)."""
    return bash_3_2() or Path("/bin/bash")


@pytest.fixture
def deploy(tmp_path: Path, oldest_bash: Path) -> Deploy:
    return Deploy(tmp_path, oldest_bash)


# --- bash 3.2: set -u and empty argument lists --------------------------------------------------------------


def test_deploy_sh_without_arguments_runs_under_bash_3_2(deploy: Deploy) -> None:
    # GIVEN macOS's bash and a deployed stack, WHEN deploy.sh runs with no arguments at all
    version = subprocess.run([str(deploy.bash), "-c", 'echo "$BASH_VERSION"'], capture_output=True, text=True)
    if not version.stdout.startswith("3.2."):
        pytest.skip("no bash 3.2 here (old_bash.py could not build one; set OLD_BASH)")
    deploy.world["cloudformation describe-stacks triton-gateway"] = DEPLOYED
    result = deploy.script("deploy.sh")
    # THEN it gets to sam deploy (bash before 4.4 aborts on an empty "${passthrough[@]}" under set -u)
    assert result.returncode == 0, out(result)
    assert "unbound variable" not in result.stderr
    assert deploy.calls("sam", "deploy"), out(result)


EACH = ["bootstrap.sh", "push-triton-image.sh", "sync-models.sh", "show-endpoint.sh", "preflight.sh"]


@pytest.mark.parametrize("script", EACH)
def test_each_script_runs_without_arguments(deploy: Deploy, script: str) -> None:
    deploy.world["cloudformation describe-stacks triton-gateway"] = DEPLOYED
    result = deploy.script(script)
    assert result.returncode == 0, out(result)
    assert "unbound variable" not in result.stderr


# --- the Triton image: the instances' platform, not the laptop's --------------------------------------------


def test_push_pulls_the_image_for_the_instances_platform(deploy: Deploy) -> None:
    # GIVEN the image is not in ECR yet, WHEN push-triton-image.sh runs (on any laptop, Apple Silicon too)
    result = deploy.script("push-triton-image.sh")
    assert result.returncode == 0, out(result)
    # THEN it pulls the amd64 image the x86 instances run, then tags and pushes it
    (pull,) = deploy.calls("docker", "pull")
    assert pull[pull.index("--platform") + 1] == "linux/amd64", pull
    assert deploy.calls("docker", "push")


def test_push_skips_an_image_already_in_ecr(deploy: Deploy) -> None:
    deploy.world["ecr describe-images"] = {"json": {"imageDetails": [{"imageTags": ["24.11-py3"]}]}}
    result = deploy.script("push-triton-image.sh")
    assert result.returncode == 0, out(result)
    assert "already in ECR" in result.stdout
    assert deploy.calls("docker", "pull") == []


# --- the AMI: pinned, rolled only when asked ----------------------------------------------------------------


def test_deploy_passes_the_deployed_ami_unless_asked_to_roll(deploy: Deploy) -> None:
    # GIVEN a deployed stack on ami-0deployed, and AWS has published ami-0latest since
    deploy.world["cloudformation describe-stacks triton-gateway"] = DEPLOYED
    # WHEN deploy.sh runs for a gateway change
    result = deploy.script("deploy.sh", "--parameter-overrides", "LogLevel=DEBUG")
    assert result.returncode == 0, out(result)
    # THEN sam deploy gets the deployed AMI id: the launch template is unchanged, no instance is replaced
    (call,) = deploy.calls("sam", "deploy")
    assert overrides_of(call)["TritonAmiId"] == "ami-0deployed"
    assert overrides_of(call)["LogLevel"] == "DEBUG"
    # AND WHEN asked to roll, it passes the latest
    result = deploy.script("deploy.sh", "--roll-ami")
    assert result.returncode == 0, out(result)
    (call,) = deploy.calls("sam", "deploy")
    assert overrides_of(call)["TritonAmiId"] == "ami-0latest"
    assert "rolling ami-0deployed -> ami-0latest" in result.stderr


def test_first_deploy_pins_the_latest_ami_and_a_gpu_type_gets_the_gpu_ami(deploy: Deploy) -> None:
    result = deploy.script("deploy.sh")
    assert result.returncode == 0, out(result)
    assert overrides_of(deploy.calls("sam", "deploy")[0])["TritonAmiId"] == "ami-0latest"
    # A deployed CPU stack moved to a GPU type follows with the GPU AMI (the CPU one has no driver).
    deploy.world["cloudformation describe-stacks triton-gateway"] = DEPLOYED
    result = deploy.script("deploy.sh", "--parameter-overrides", "TritonInstanceType=g5.xlarge")
    assert result.returncode == 0, out(result)
    assert overrides_of(deploy.calls("sam", "deploy")[0])["TritonAmiId"] == "ami-0gpu"


# --- stacks in a failed or busy state -----------------------------------------------------------------------


def test_rollback_complete_is_explained_and_deleted_with_consent(deploy: Deploy) -> None:
    # GIVEN a first deploy that rolled back (ROLLBACK_COMPLETE: cannot be updated, only deleted)
    deploy.world["cloudformation describe-stacks triton-gateway"] = stack(
        "ROLLBACK_COMPLETE", {"TritonAmiId": "ami-0deployed"}
    )
    # WHEN deploy.sh runs again with --yes
    result = deploy.script("deploy.sh", "--yes")
    assert result.returncode == 0, out(result)
    # THEN it says what state the stack is in and why, deletes it, waits, and only then deploys
    assert "ROLLBACK_COMPLETE" in result.stdout and "Received 0 SUCCESS signal" in result.stdout, out(result)
    deleted, waited = (
        deploy.index("aws", "cloudformation", "delete-stack"),
        deploy.index("aws", "cloudformation", "wait"),
    )
    assert deleted < waited < deploy.index("sam", "deploy")


def test_rollback_complete_is_left_alone_without_consent(deploy: Deploy) -> None:
    deploy.world["cloudformation describe-stacks triton-gateway"] = stack("ROLLBACK_COMPLETE")
    # No terminal and no --yes: nothing is deleted and nothing deployed; the message says how to go on.
    result = deploy.script("deploy.sh")
    assert result.returncode != 0
    assert "ROLLBACK_COMPLETE" in result.stdout
    assert "--yes" in result.stderr and "delete-stack --stack-name triton-gateway" in result.stderr
    assert deploy.calls("aws", "cloudformation", "delete-stack") == []
    assert deploy.calls("sam", "deploy") == []


def test_an_operation_in_progress_is_waited_for(deploy: Deploy) -> None:
    # (two looks while the script reads the stack's parameters, two more while it waits, then done)
    in_progress = stack("UPDATE_IN_PROGRESS", {"TritonAmiId": "ami-0deployed"})
    states = [in_progress] * 4 + [DEPLOYED]
    deploy.world["cloudformation describe-stacks triton-gateway"] = {"sequence": states}
    result = deploy.script("deploy.sh")
    assert result.returncode == 0, out(result)
    assert "UPDATE_IN_PROGRESS" in result.stdout and "waiting" in result.stdout
    assert deploy.calls("sam", "deploy")


def test_update_rollback_failed_stops_with_the_command_that_resolves_it(deploy: Deploy) -> None:
    deploy.world["cloudformation describe-stacks triton-gateway"] = stack("UPDATE_ROLLBACK_FAILED")
    result = deploy.script("deploy.sh", "--yes")
    assert result.returncode != 0
    assert "continue-update-rollback --stack-name triton-gateway" in result.stderr
    assert deploy.calls("sam", "deploy") == []


# --- pre-flight ---------------------------------------------------------------------------------------------


def test_preflight_passes_a_good_account(deploy: Deploy) -> None:
    result = deploy.script("preflight.sh", "--parameter-overrides", "TritonAmiId=ami-0latest")
    assert result.returncode == 0, out(result)
    assert "FAIL" not in result.stdout and "pre-flight: ok" in result.stdout


def test_preflight_refuses_a_10_concurrency_account_naming_the_quota(deploy: Deploy) -> None:
    # GIVEN a young account: 10 concurrent executions in all
    deploy.world["lambda get-account-settings"] = lambda_account(10, 10)
    result = deploy.script(
        "preflight.sh", "--parameter-overrides", "TritonAmiId=ami-0latest", "GatewayReservedConcurrency=10"
    )
    assert result.returncode == 1, out(result)
    assert "L-B99A9384" in result.stdout and "ConcurrentExecutions" in result.stdout
    assert "GatewayReservedConcurrency" in result.stdout and "request-service-quota-increase" in result.stdout
    # AND no reservation at all (another default) passes the same account
    for unset in ("GatewayReservedConcurrency=", "GatewayReservedConcurrency=0"):
        result = deploy.script("preflight.sh", "--parameter-overrides", "TritonAmiId=ami-0latest", unset)
        assert result.returncode == 0, out(result)


def test_preflight_counts_the_deployed_functions_own_reservation(deploy: Deploy) -> None:
    # 200 in all, 95 unreserved while this gateway holds 10: its own 10 come back, 100 stay: 5 fits, 6 not.
    deploy.world["cloudformation describe-stacks triton-gateway"] = DEPLOYED
    deploy.world["lambda get-account-settings"] = lambda_account(200, 95)
    result = deploy.script("preflight.sh", "--parameter-overrides", "GatewayReservedConcurrency=5")
    assert result.returncode == 0, out(result)
    result = deploy.script("preflight.sh", "--parameter-overrides", "GatewayReservedConcurrency=6")
    assert result.returncode == 1, out(result)


def test_preflight_refuses_a_gpu_type_without_vcpu_quota(deploy: Deploy) -> None:
    deploy.world["service-quotas get-service-quota L-DB2E81BA"] = {"json": {"Quota": {"Value": 0.0}}}
    args = ["--parameter-overrides", "TritonInstanceType=g5.xlarge", "TritonAmiId=ami-0gpu"]
    result = deploy.script("preflight.sh", *args, "TritonVolumeSize=100")
    assert result.returncode == 1, out(result)
    assert "L-DB2E81BA" in result.stdout and "Running On-Demand G and VT instances" in result.stdout
    assert "needs 8 vCPUs" in result.stdout
    deploy.world["service-quotas get-service-quota L-DB2E81BA"] = {"json": {"Quota": {"Value": 8.0}}}
    assert deploy.script("preflight.sh", *args, "TritonVolumeSize=100").returncode == 0


def test_preflight_refuses_a_volume_smaller_than_the_amis_snapshot(deploy: Deploy) -> None:
    # The Deep Learning Base AMI's root snapshot is 75 GiB; 60 would fail every launch.
    args = ["--parameter-overrides", "TritonInstanceType=g5.xlarge", "TritonAmiId=ami-0gpu"]
    result = deploy.script("preflight.sh", *args, "TritonVolumeSize=60")
    assert result.returncode == 1, out(result)
    assert "TritonVolumeSize" in result.stdout and "75 GiB" in result.stdout
    # 0 (the default) and empty mean the template's size for the type: 100 GiB on GPU types.
    for default_size in ("TritonVolumeSize=", "TritonVolumeSize=0"):
        result = deploy.script("preflight.sh", *args, default_size)
        assert result.returncode == 0, out(result)
        assert "a 100 GiB root volume" in result.stdout


def test_preflight_refuses_an_ami_whose_root_is_not_xvda(deploy: Deploy) -> None:
    deploy.world["ec2 describe-images ami-0ubuntu"] = image(root="/dev/sda1")
    result = deploy.script("preflight.sh", "--parameter-overrides", "TritonAmiId=ami-0ubuntu")
    assert result.returncode == 1, out(result)
    assert "/dev/sda1" in result.stdout


def test_preflight_refuses_a_region_with_one_zone(deploy: Deploy) -> None:
    deploy.world["ec2 describe-availability-zones"] = {
        "json": {"AvailabilityZones": [{"ZoneName": "xx-1a", "State": "available"}]}
    }
    result = deploy.script("preflight.sh", "--parameter-overrides", "TritonAmiId=ami-0latest")
    assert result.returncode == 1, out(result)
    assert "Availability Zones" in result.stdout and "VpcId" in result.stdout


def test_preflight_refuses_a_missing_api_gateway_role(deploy: Deploy) -> None:
    gone = "arn:aws:iam::123456789012:role/gone"
    deploy.world["apigateway get-account"] = {"json": {"cloudwatchRoleArn": gone}}
    deploy.world["iam get-role gone"] = {"exit": 254, "stderr": "An error occurred (NoSuchEntity) in GetRole"}
    result = deploy.script("preflight.sh", "--parameter-overrides", "TritonAmiId=ami-0latest")
    assert result.returncode == 1, out(result)
    assert "cloudwatchRoleArn" in result.stdout and "ConfigureApiGatewayAccount=true" in result.stdout
    # None set, and the caller forbids the stack to set it
    deploy.world["apigateway get-account"] = {"json": {}}
    args = ["--parameter-overrides", "TritonAmiId=ami-0latest", "ConfigureApiGatewayAccount=false"]
    result = deploy.script("preflight.sh", *args)
    assert result.returncode == 1, out(result)


# --- the one command ----------------------------------------------------------------------------------------


def test_dev_sh_deploy_runs_every_step_in_order_and_again(deploy: Deploy) -> None:
    # GIVEN an account with nothing deployed but the bootstrap stack, WHEN ./dev.sh deploy runs
    result = deploy.run([str(deploy.bash), "dev.sh", "deploy"])
    assert result.returncode == 0, out(result)
    # THEN the checks come before anything is created, then bootstrap, image, models, application stack
    order = [
        deploy.index("aws", "ec2", "describe-availability-zones"),
        deploy.index("aws", "cloudformation", "deploy"),
        deploy.index("docker", "pull"),
        deploy.index("aws", "s3", "sync"),
        deploy.index("sam", "deploy"),
    ]
    assert order == sorted(order), order
    (pull,) = deploy.calls("docker", "pull")
    assert "--platform" in pull
    # AND it ends with the endpoint, how to read the key, and requests that work as printed
    assert f"API_URL={API_URL}" in result.stdout
    assert "get-api-key --region us-east-1 --api-key key123 --include-value" in result.stdout
    assert f"curl {API_URL}health" in result.stdout
    # AND WHEN run again (the image is in ECR by now), nothing is pulled and the AMI stays
    deploy.world["ecr describe-images"] = {"json": {"imageDetails": [{}]}}
    result = deploy.run([str(deploy.bash), "dev.sh", "deploy"])
    assert result.returncode == 0, out(result)
    assert deploy.calls("docker", "pull") == []
    assert overrides_of(deploy.calls("sam", "deploy")[0])["TritonAmiId"] == "ami-0deployed"


def test_dev_sh_deploy_creates_nothing_when_a_check_fails(deploy: Deploy) -> None:
    deploy.world["lambda get-account-settings"] = lambda_account(10, 10)
    result = deploy.run(
        [str(deploy.bash), "dev.sh", "deploy", "--parameter-overrides", "GatewayReservedConcurrency=10"]
    )
    assert result.returncode != 0
    assert "L-B99A9384" in result.stdout
    for created in (("aws", "cloudformation", "deploy"), ("docker", "pull"), ("aws", "s3", "sync"), ("sam",)):
        assert deploy.calls(*created) == [], created
