"""Stand-ins for the commands the Triton instance's user data runs that need AWS, Docker or a GPU.

Run as ``python instance_shims.py NAME ARGS...`` (the rehearsal puts a ``NAME`` wrapper on PATH for each).
Every call is appended to ``$REHEARSAL_DIR/calls.jsonl``. ``docker run`` starts the real local tritonserver
with the container's arguments translated (model repository to the local S3 server, ports to free ones)
under a supervisor that restarts it as ``--restart unless-stopped`` does; ``docker inspect``/``logs``/``rm``
answer for it. ``curl`` answers the instance metadata service and sends Triton's port 8000 to the real one.
``sleep`` moves the instance's clock (``/proc/uptime``, a file the rehearsal binds over it) instead of
waiting, so a 20-minute wait runs in seconds.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REHEARSAL = Path(os.environ.get("REHEARSAL_DIR", "."))
CONTAINER = REHEARSAL / "container"
INSTANCE_ID = "i-0123456789abcdef0"


def install(bin_dir: Path, names: tuple[str, ...]) -> None:
    """A ``NAME`` wrapper in ``bin_dir`` for each name, and ``_template`` for the ones dnf installs later."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = f'#!/bin/bash\nexec "{sys.executable}" "{Path(__file__).resolve()}" NAME "$@"\n'
    (bin_dir / "_template").write_text(wrapper)
    for name in names:
        (bin_dir / name).write_text(wrapper.replace("NAME", name))
        (bin_dir / name).chmod(0o755)


def record(name: str, args: list[str], **extra: object) -> None:
    with (REHEARSAL / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps({"command": name, "args": args, **extra}) + "\n")


def state() -> dict[str, object]:
    path = CONTAINER / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def supervisor_alive() -> bool:
    pid = state().get("supervisor")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def triton_ready() -> bool:
    port = state().get("http_port")
    if port is None:
        return False
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def translate_run(args: list[str]) -> tuple[dict[str, str], list[str], dict[str, object]]:
    """``docker run``'s options and command -> Triton's environment, its command, and what was asked."""
    options_with_value = {
        "--name", "--restart", "--stop-timeout", "--network", "--shm-size", "--ulimit", "--gpus", "--volume",
        "--env", "--log-driver", "--log-opt",
    }  # fmt: skip
    seen: dict[str, list[str]] = {}
    env: dict[str, str] = {}
    i = 0
    while args[i].startswith("-"):
        option = args[i]
        if option == "--detach":
            seen.setdefault(option, []).append("")
            i += 1
            continue
        if option not in options_with_value:
            raise SystemExit(f"docker shim: unknown docker run option {option}")
        seen.setdefault(option, []).append(args[i + 1])
        if option == "--env":
            name, _, value = args[i + 1].partition("=")
            env[name] = value
        i += 2
    image, command = args[i], args[i + 1 :]
    if command[0] != "tritonserver":
        raise SystemExit(f"docker shim: the container runs {command[0]}, not tritonserver")
    from localdev.tritonserver import bundled_triton_dir, free_ports, prepare_backend_dir

    triton_dir = bundled_triton_dir()
    http_port, grpc_port, metrics_port = free_ports(3)
    ports = {"--http-port": http_port, "--grpc-port": grpc_port, "--metrics-port": metrics_port}
    endpoint = os.environ["REHEARSAL_S3_ENDPOINT"]
    triton = [str(triton_dir / "bin" / "tritonserver")]
    for arg in command[1:]:
        name, _, value = arg.partition("=")
        if name == "--model-repository":
            # The instance's S3 client finds the regional endpoint; here the local S3 server is the endpoint.
            assert value.startswith("s3://"), value
            arg = f"--model-repository=s3://{endpoint}/{value.removeprefix('s3://')}"
        elif name in ports:
            arg = f"{name}={ports[name]}"
        triton.append(arg)
    triton += [
        f"--backend-directory={prepare_backend_dir(REHEARSAL / 'backends', triton_dir)}",
        f"--cache-directory={triton_dir / 'caches'}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--allow-gpu-metrics=false",
    ]
    # The instance role's credentials come from the instance metadata service; the local server takes any.
    credentials = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    python_bin = str(Path(sys.executable).parent)
    environment = {**os.environ, **credentials, **env, "PATH": f"{python_bin}:/usr/bin:/bin"}
    environment.pop("PYTHONHOME", None)
    described = {"image": image, "options": seen, "http_port": http_port, "grpc_port": grpc_port}
    return environment, triton, described


def supervise() -> None:
    """Run Triton, restarting it on exit with Docker's backoff (100 ms, doubling), until SIGTERM."""
    current = state()
    command = [str(arg) for arg in current["command"]]  # type: ignore[attr-defined]
    environment = json.loads((CONTAINER / "env.json").read_text())
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    restarts, delay = 0, 0.1
    with (CONTAINER / "log").open("ab") as log:
        while not stopping:
            began = time.monotonic()
            child = subprocess.Popen(
                ["setpriv", "--pdeathsig", "TERM", "--", *command], stdout=log, stderr=log, env=environment
            )
            child.wait()
            if stopping:
                break
            restarts += 1
            (CONTAINER / "restarts").write_text(str(restarts))
            delay = 0.1 if time.monotonic() - began > 10 else min(delay * 2, 60.0)
            time.sleep(delay)


def docker(args: list[str]) -> int:
    verb = args[0]
    if verb == "login":
        record("docker", args, stdin=sys.stdin.read().strip())
        return 0
    record("docker", args)
    if verb == "pull":
        return 0
    if verb == "run":
        environment, command, described = translate_run(args[1:])
        CONTAINER.mkdir(exist_ok=True)
        (CONTAINER / "env.json").write_text(json.dumps(environment))
        (CONTAINER / "restarts").write_text("0")
        (CONTAINER / "state.json").write_text(json.dumps({"command": command, **described}))
        supervisor = subprocess.Popen(
            [sys.executable, __file__, "_supervise"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        (CONTAINER / "state.json").write_text(
            json.dumps({"command": command, **described, "supervisor": supervisor.pid})
        )
        record("docker", ["(started)"], triton=command, env_keys=sorted(environment))
        print("0123456789ab")
        return 0
    if verb == "rm":
        if not supervisor_alive():
            print("Error response from daemon: No such container: triton", file=sys.stderr)
            return 1
        os.killpg(int(state()["supervisor"]), signal.SIGTERM)  # type: ignore[call-overload]
        return 0
    if verb == "inspect" and args[1] == "--format":
        if not (CONTAINER / "state.json").exists():
            print("Error: No such object: triton", file=sys.stderr)
            return 1
        answers = {
            # Docker counts a container waiting to be restarted as running.
            "{{.State.Running}}": "true" if supervisor_alive() else "false",
            "{{.RestartCount}}": (CONTAINER / "restarts").read_text(),
        }
        if args[2] not in answers:
            raise SystemExit(f"docker shim: no answer for inspect --format {args[2]}")
        print(answers[args[2]])
        return 0
    if verb == "logs":
        lines = (CONTAINER / "log").read_text(errors="replace").splitlines() if CONTAINER.exists() else []
        if args[1] == "--tail":
            lines = lines[-int(args[2]) :]
        print("\n".join(lines), file=sys.stderr)  # docker logs replays the container's stderr on stderr
        return 0
    raise SystemExit(f"docker shim: docker {verb} is not rehearsed")


def curl(args: list[str]) -> int:
    url = next(arg for arg in args if arg.startswith("http"))
    if "169.254.169.254" in url:
        record("curl", args)
        print("rehearsal-token" if url.endswith("/api/token") else INSTANCE_ID, end="")
        return 0
    port = state().get("http_port")
    if port is None:
        return 7  # curl: couldn't connect
    translated = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in args]
    return subprocess.run(["/usr/bin/curl", *translated], check=False).returncode


def aws(args: list[str]) -> int:
    record("aws", args)
    command = args[:2]
    if command == ["ecr", "get-login-password"]:
        print("rehearsal-password")
    elif command == ["sts", "get-caller-identity"]:
        print(json.dumps({"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/rehearsal"}))
    elif command == ["configure", "get"]:
        print(os.environ["AWS_REGION"])
    elif command == ["cloudformation", "describe-stacks"] and "ModelBucketName" in " ".join(args):
        print(os.environ["REHEARSAL_MODEL_BUCKET"])
    elif command == ["s3", "sync"]:
        s3_sync(args[2:])
    else:
        raise SystemExit(f"aws shim: aws {' '.join(command)} is not rehearsed")
    return 0


def s3_sync(args: list[str]) -> None:
    """``aws s3 sync LOCAL_DIR s3://BUCKET/PREFIX/`` into an empty prefix, with aws's --exclude/--include:
    every file is in unless a later matching filter says otherwise; patterns match the path relative to
    LOCAL_DIR, ``*`` across ``/`` too."""
    import boto3

    filters: list[tuple[str, str]] = []
    positional = []
    i = 0
    while i < len(args):
        if args[i] in ("--exclude", "--include"):
            filters.append((args[i], args[i + 1]))
            i += 2
        elif args[i] == "--region":
            i += 2
        elif args[i].startswith("--"):
            if args[i] not in ("--delete", "--only-show-errors"):
                raise SystemExit(f"aws shim: aws s3 sync {args[i]} is not rehearsed")
            i += 1
        else:
            positional.append(args[i])
            i += 1
    source, destination = Path(positional[0]), positional[1]
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=os.environ["REHEARSAL_S3_ENDPOINT"])
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        included = True
        for kind, pattern in filters:
            if fnmatch.fnmatchcase(relative, pattern):
                included = kind == "--include"
        if included:
            s3.upload_file(str(path), bucket, prefix.rstrip("/") + "/" + relative)


def sleep(args: list[str]) -> int:
    seconds = float(args[0])
    record("sleep", args)
    uptime = REHEARSAL / "uptime"
    with uptime.open("r+") as clock:
        now = float(clock.read().split()[0]) + seconds * float(os.environ.get("REHEARSAL_CLOCK_RATE", "1"))
        clock.seek(0)
        clock.write(f"{now:.2f} {now:.2f}\n")
        clock.truncate()
    time.sleep(float(os.environ.get("REHEARSAL_REAL_SLEEP", "0.2")))
    return 0


def dnf_install(args: list[str]) -> int:
    """dnf/yum install: lay down the installed command as another shim."""
    record("dnf", args)
    shims = {
        "aws-cfn-bootstrap": Path("/opt/aws/bin/cfn-signal"),
        "amazon-cloudwatch-agent": Path("/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"),
    }
    for package in (arg for arg in args[1:] if not arg.startswith("-")):
        if package in shims:
            target = shims[package]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text((REHEARSAL / "bin" / "_template").read_text().replace("NAME", target.name))
            target.chmod(0o755)
    Path("/opt/aws/amazon-cloudwatch-agent/etc").mkdir(parents=True, exist_ok=True)
    return 0


def main(argv: list[str]) -> int:
    name, args = argv[0], argv[1:]
    if name == "_supervise":
        supervise()
        return 0
    if name == "docker":
        return docker(args)
    if name == "curl":
        return curl(args)
    if name == "sleep":
        return sleep(args)
    if name in ("dnf", "yum"):
        return dnf_install(args)
    if name == "cfn-signal":
        record(name, args, triton_ready=triton_ready())
        return 0
    if name == "aws":
        return aws(args)
    if name == "nvidia-smi":
        record(name, args)
        print("GPU 0: NVIDIA A10G (rehearsal)")
        return 0
    record(name, args)  # systemctl, amazon-cloudwatch-agent-ctl: nothing to do here
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
