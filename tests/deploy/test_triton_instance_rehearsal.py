"""The Triton instance's user data, rendered from the template for the CPU and GPU paths, run here as an
instance would run it (instance_rehearsal.py): Docker, AWS and the GPU driver are shims, Triton is the real
tritonserver, and its model repository is on the local S3 server, laid out as sync-models.sh uploads it."""

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from instance_rehearsal import BOOTED_AT, Boot, rehearse
from instance_role import resolve_intrinsics
from local_s3 import LocalS3, sync_models
from resolve_conditions import resolve
from user_data import SAMPLES, render_user_data

BUCKET = SAMPLES["ModelBucket"]
CPU = {"TritonInstanceType": "m6i.large"}
GPU = {"TritonInstanceType": "g5.xlarge"}
BROKEN_ERROR = "rehearsal: the weights of this model are corrupt"

PYTHON_MODEL_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "X" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_INT32 dims: [ 1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""
PYTHON_MODEL = """\
import time


class TritonPythonModel:
    def initialize(self, args):
        {initialize}

    def execute(self, requests):
        return []
"""


def python_model(models: Path, name: str, initialize: str) -> None:
    (models / name / "1").mkdir(parents=True)
    (models / name / "config.pbtxt").write_text(PYTHON_MODEL_CONFIG.format(name=name))
    (models / name / "1" / "model.py").write_text(PYTHON_MODEL.format(initialize=initialize))


@pytest.fixture(scope="module")
def instance_s3(tmp_path_factory: pytest.TempPathFactory, model_repository: Path) -> Iterator[LocalS3]:
    """The model bucket with three repositories: prefix ``models`` (densenet_onnx, as production serves it),
    ``broken`` and ``slow`` (densenet_onnx and a model that fails to load / takes 10 minutes to)."""
    root = tmp_path_factory.mktemp("instance-models")
    for prefix in ("models", "broken", "slow"):
        shutil.copytree(model_repository / "densenet_onnx", root / prefix / "densenet_onnx")
    python_model(root / "broken", "corrupt_model", f"raise RuntimeError({BROKEN_ERROR!r})")
    python_model(root / "slow", "slow_loader", "time.sleep(600)")
    with LocalS3(tmp_path_factory.mktemp("moto") / "moto_server.log") as s3:
        for prefix in ("models", "broken", "slow"):
            sync_models(s3, root / prefix, BUCKET, prefix, tmp_path_factory.mktemp(f"sync-{prefix}"))
        yield s3


def user_data(translated: dict[str, Any], **values: str) -> str:
    # Plaintext gRPC (the template's default TLS setting); the TLS flags have their own test.
    return render_user_data(translated, TritonTlsParameterPrefix="", **values)


def docker_run(boot: Boot) -> dict[str, Any]:
    (started,) = [call for call in boot.called("docker") if call["args"] == ["(started)"]]
    (run,) = [call for call in boot.called("docker") if call["args"][0] == "run"]  # type: ignore[index]
    return {"triton": started["triton"], "args": run["args"]}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("instance", [CPU, GPU], ids=["cpu", "gpu"])
def test_user_data_signals_success_only_once_triton_is_ready(
    instance: dict[str, str], instance_s3: LocalS3, translated: dict[str, Any], tmp_path: Path
) -> None:
    boot = rehearse(
        user_data(translated, **instance), tmp_path, instance_s3.endpoint, gpu_driver=instance is GPU
    )
    assert boot.returncode == 0, boot.log + boot.triton_log
    assert boot.signals() == [("0", True)], boot.log
    run = docker_run(boot)
    assert f"--model-repository=s3://{instance_s3.endpoint}/{BUCKET}/models" in run["triton"]
    assert "successfully loaded 'densenet_onnx'" in boot.triton_log
    gpus = [run["args"][i + 1] for i, arg in enumerate(run["args"]) if arg == "--gpus"]
    assert gpus == (["all"] if instance is GPU else [])
    # The CloudWatch agent was installed, configured and started after Triton.
    assert boot.called("amazon-cloudwatch-agent-ctl")


@pytest.mark.timeout(240)
def test_user_data_signals_failure_naming_the_model_and_tritons_error_when_a_model_does_not_load(
    instance_s3: LocalS3, translated: dict[str, Any], tmp_path: Path
) -> None:
    boot = rehearse(user_data(translated, ModelPrefix="broken", **CPU), tmp_path, instance_s3.endpoint)
    assert boot.returncode != 0
    assert boot.signals() == [("1", False)], boot.log
    # The reason, where whoever reads the instance's log looks: which model, and Triton's own error.
    reason = [line for line in boot.log.splitlines() if "failed to load 'corrupt_model'" in line]
    assert reason, boot.log
    assert BROKEN_ERROR in "\n".join(reason)


def test_user_data_fails_at_once_on_a_gpu_type_without_the_driver(
    instance_s3: LocalS3, translated: dict[str, Any], tmp_path: Path
) -> None:
    boot = rehearse(user_data(translated, **GPU), tmp_path, instance_s3.endpoint, gpu_driver=False)
    assert boot.returncode != 0
    assert boot.signals() == [("1", False)]
    assert "no NVIDIA driver" in boot.log
    assert not boot.called("docker")


def health_check_grace_period(translated: dict[str, Any]) -> int:
    template = resolve(translated)
    group = template["Resources"]["TritonAutoScalingGroup"]["Properties"]
    return int(resolve_intrinsics(group["HealthCheckGracePeriod"], template["ParameterValues"]))


def iso_seconds(duration: str) -> int:
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", duration)
    assert match, duration
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@pytest.mark.timeout(240)
def test_a_slow_boot_gives_up_with_its_reason_before_the_group_would_replace_the_instance(
    instance_s3: LocalS3, translated: dict[str, Any], tmp_path: Path
) -> None:
    # GIVEN the template's grace period and boot timeout, the user data rendered with the same parameters
    grace = health_check_grace_period(translated)
    parameters = resolve(translated)["ParameterValues"]
    rendered = user_data(translated, ModelPrefix="slow", **CPU, **_boot_timeout(parameters))
    # WHEN Triton takes longer to load than any of them (the instance's clock runs at the script's sleeps)
    boot = rehearse(rendered, tmp_path, instance_s3.endpoint, clock_rate=1.0, real_sleep=0.02)
    # THEN the user data waited nearly the whole grace period, gave up before it ended, and said so
    assert boot.signals() == [("1", False)], boot.log
    assert "not ready" in boot.log
    assert grace - 120 <= boot.uptime < grace, (
        f"the user data waited until {boot.uptime:.0f} s after launch; the group replaces an instance "
        f"that is not healthy {grace} s after launch"
    )
    assert boot.uptime > BOOTED_AT


def _boot_timeout(parameters: dict[str, Any]) -> dict[str, str]:
    # The user data takes the boot timeout from the template where the template has one.
    return {"TritonBootTimeoutSeconds": parameters["TritonBootTimeoutSeconds"]} if (
        "TritonBootTimeoutSeconds" in parameters
    ) else {}  # fmt: skip


def test_creation_and_rolling_updates_wait_longer_than_any_boot_may_take(translated: dict[str, Any]) -> None:
    group = translated["Resources"]["TritonAutoScalingGroup"]
    timeout = iso_seconds(group["CreationPolicy"]["ResourceSignal"]["Timeout"])
    pause = iso_seconds(group["UpdatePolicy"]["AutoScalingRollingUpdate"]["PauseTime"])
    longest = int(translated["Parameters"]["TritonBootTimeoutSeconds"]["MaxValue"])
    # Launch (capacity, boot to the user data) comes on top of the boot timeout, which counts from launch.
    assert min(timeout, pause) >= longest + 300


@pytest.mark.parametrize("instance", [CPU, GPU], ids=["cpu", "gpu"])
def test_shellcheck_the_rehearsed_user_data(
    instance: dict[str, str], run_tool: Any, translated: dict[str, Any], tmp_path: Path
) -> None:
    script = tmp_path / "user-data.sh"
    script.write_text(user_data(translated, **instance))
    result = run_tool("shellcheck", "--shell=bash", script)
    assert result.returncode == 0, result.stdout + result.stderr
