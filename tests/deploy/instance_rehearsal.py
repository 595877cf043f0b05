"""Run the Triton launch template's user data here, as an instance would, with shims for AWS, Docker and
the GPU (instance_shims.py) and the real tritonserver reading its models from the local S3 server.

The script runs unchanged, as root of its own user namespace, in a private mount namespace where /opt
(cfn-signal and the CloudWatch agent land there), /var/log and /proc/uptime (the instance's clock, which the
``sleep`` shim moves) are the rehearsal's own: nothing on this machine is touched, concurrent runs never meet,
and no root is needed outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import instance_shims
from local_s3 import CREDENTIALS

# Commands the user data finds on PATH; dnf installs cfn-signal and the CloudWatch agent's ctl under /opt.
ON_PATH = ("docker", "aws", "dnf", "yum", "systemctl", "curl", "sleep")
# Seconds from launch to the user data's start: the instance's uptime when the rehearsal begins.
BOOTED_AT = 60.0


@dataclass
class Boot:
    """What one rehearsed boot did."""

    returncode: int
    log: str  # /var/log/triton-userdata.log
    calls: list[dict[str, object]]
    uptime: float  # the instance's clock when the user data ended
    triton_log: str

    def called(self, command: str) -> list[dict[str, object]]:
        return [call for call in self.calls if call["command"] == command]

    def signals(self) -> list[tuple[str, bool]]:
        """(exit code, whether Triton answered ready at that moment) of every cfn-signal."""
        found = []
        for call in self.called("cfn-signal"):
            args = [str(arg) for arg in call["args"]]  # type: ignore[attr-defined]
            found.append((args[args.index("--exit-code") + 1], bool(call["triton_ready"])))
        return found


def rehearse(
    user_data: str,
    directory: Path,
    s3_endpoint: str,
    *,
    gpu_driver: bool = False,
    clock_rate: float = 0.0,
    real_sleep: float = 0.5,
    timeout: float = 180.0,
) -> Boot:
    """Boot once. ``clock_rate`` 0 stops the instance's clock (Triton gets all the time it needs); 1 lets
    every ``sleep N`` of the script take N seconds of it at once, at ``real_sleep`` seconds of real time."""
    bin_dir, var_log = directory / "bin", directory / "var-log"
    var_log.mkdir(parents=True)
    instance_shims.install(bin_dir, (*ON_PATH, *(("nvidia-smi",) if gpu_driver else ())))
    (directory / "uptime").write_text(f"{BOOTED_AT:.2f} {BOOTED_AT:.2f}\n")
    script = directory / "user-data.sh"
    script.write_text(user_data)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(directory),
        "LANG": "C.UTF-8",
        "REHEARSAL_DIR": str(directory),
        "REHEARSAL_S3_ENDPOINT": s3_endpoint,
        "REHEARSAL_CLOCK_RATE": str(clock_rate),
        "REHEARSAL_REAL_SLEEP": str(real_sleep),
        **CREDENTIALS,
    }
    inside = (
        'mount -t tmpfs tmpfs /opt && mount --bind "$REHEARSAL_DIR/var-log" /var/log'
        ' && mount --bind "$REHEARSAL_DIR/uptime" /proc/uptime && exec bash "$REHEARSAL_DIR/user-data.sh"'
    )
    try:
        result = subprocess.run(
            # --map-root-user: root inside, as user data runs, without needing root outside.
            ["unshare", "--map-root-user", "--mount", "--propagation", "private", "--", "bash", "-c", inside],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        stop_container(directory)
    log_path = var_log / "triton-userdata.log"
    calls_path = directory / "calls.jsonl"
    calls = calls_path.read_text().splitlines() if calls_path.exists() else []
    triton_log = directory / "container" / "log"
    return Boot(
        returncode=result.returncode,
        log=log_path.read_text() if log_path.exists() else result.stdout + result.stderr,
        calls=[json.loads(line) for line in calls],
        uptime=float((directory / "uptime").read_text().split()[0]),
        triton_log=triton_log.read_text(errors="replace") if triton_log.exists() else "",
    )


def stop_container(directory: Path, timeout: float = 15.0) -> None:
    """Stop the container's supervisor and its Triton (one process group), whatever state they are in."""
    state_path = directory / "container" / "state.json"
    if not state_path.exists():
        return
    pid = json.loads(state_path.read_text()).get("supervisor")
    if not isinstance(pid, int):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.killpg(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
