"""What Dockerfile.lambda puts in the image — the runtime dependencies exactly as requirements.lock pins
them, and service/, nothing else — runs the Lambda handler. No Docker engine here, so the image's task root
is rebuilt with the Dockerfile's own pip command."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.lambda_events import EVENTS
from tests.lambda_stand_ins import ApiGateway, RuntimeApi

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT = EVENTS / "health.json"


def pruned_paths() -> list[str]:
    """The task-root paths Dockerfile.lambda deletes after installing the lock (its ``rm -rf``)."""
    dockerfile = (REPO_ROOT / "Dockerfile.lambda").read_text().replace("\\\n", " ")
    match = re.search(r"^WORKDIR \$\{LAMBDA_TASK_ROOT\}\nRUN rm -rf (.+)$", dockerfile, re.M)
    assert match, "Dockerfile.lambda no longer prunes the task root as this test expects"
    return match[1].split()


# Run as the Lambda runtime would: the task root first, no site-packages (-S), no environment paths (-I).
PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from service.lambda_handler import handler

class Context:
    def get_remaining_time_in_millis(self):
        return 30_000

response = handler(json.load(open(sys.argv[2])), Context())
cold = sorted({"numpy", "PIL", "tritonclient.grpc._client", "tritonclient.utils"} & set(sys.modules))
# /docs' own script, from the task root (fastapi-offline is a runtime dependency)
import re
docs = json.load(open(sys.argv[3]))
page = handler(docs, Context())
script = re.search(r"(/api/docs/assets/[^'\\x22]+swagger-ui-bundle.js)", page["body"]).group(1)
docs["path"] = script.removeprefix("/api")
docs["requestContext"]["path"] = script
asset = handler(docs, Context())
# Every module of the service imports from what the image holds (the inference routes load lazily).
import importlib, pkgutil, service, simdjson
for module in pkgutil.walk_packages(service.__path__, "service."):
    importlib.import_module(module.name)
leaked = sorted({"uvicorn", "onnx", "onnxruntime", "pytriton", "httpx", "pytest"} & set(sys.modules))
print(json.dumps({"status": response["statusCode"], "body": json.loads(response["body"]), "leaked": leaked,
                  "cold": cold,
                  "docs_asset": [asset["statusCode"], asset["headers"]["content-type"], len(asset["body"])]}))
"""


def image_environment() -> dict[str, str]:
    """The environment Dockerfile.lambda's ENV lines give the Lambda's process."""
    lines = (REPO_ROOT / "Dockerfile.lambda").read_text().splitlines()
    pairs = [line.removeprefix("ENV ").split("=", 1) for line in lines if line.startswith("ENV ")]
    return {key: value for key, value in pairs}


def lambda_python() -> str:
    """The Lambda runtime's Python (3.12) where this machine has a working one, else this test's own.

    (The lock is universal: on another Python pip takes that Python's pins, e.g. numpy 2.4 on 3.11.)
    """
    # pyenv's shim fails outside a directory that selects 3.12, so its installs are looked at too.
    candidates = [
        shutil.which("python3.12"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "import pip"], capture_output=True).returncode == 0:
            return candidate
    return sys.executable


@pytest.fixture(scope="module")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's task root: the locked runtime dependencies (for the Lambda's Python 3.12 where this
    machine has one), hash-checked and without resolving anything else, and the service package, as
    Dockerfile.lambda lays them out."""
    python = lambda_python()
    task_root = tmp_path_factory.mktemp("image") / "task"
    subprocess.run(
        [
            *(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--require-hashes", "--no-deps", "--requirement", str(REPO_ROOT / "requirements.lock")),
            *("--target", str(task_root)),
        ],
        check=True,
    )
    # ... less what Dockerfile.lambda prunes
    for pattern in pruned_paths():
        for path in task_root.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.copytree(REPO_ROOT / "service", task_root / "service")
    return task_root


def test_runtime_dependencies_alone_run_the_handler(task_root: Path) -> None:
    # GIVEN the image's task root (the fixture)
    python = lambda_python()
    # WHEN the handler is imported in isolation and given an API Gateway event, with no Triton to reach
    env = {"PATH": os.environ["PATH"], "TRITON_GRPC_URL": "127.0.0.1:9", "HEALTH_TIMEOUT_SECONDS": "1"}
    env |= image_environment()  # the image's ENV lines (glibc's malloc tunables)
    out = subprocess.run(
        [python, "-I", "-S", "-c", PROBE, str(task_root), str(EVENT), str(EVENTS / "docs.json")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    # THEN it answers an honest 503 without loading the inference pipeline, every service module imports
    # from the pruned task root, and nothing comes from the dev or local extras
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 503
    assert result["body"]["triton"] == "unavailable"
    assert result["cold"] == [], "a cold /health should not import these"
    assert result["leaked"] == []
    # and serves /docs' Swagger UI script itself (gzipped, as the event accepts gzip)
    status, media_type, size = result["docs_asset"]
    assert (status, media_type) == (200, "text/javascript; charset=utf-8")
    assert size > 100_000


def test_the_streaming_functions_entry_runs_from_the_image(task_root: Path) -> None:
    # GIVEN the streaming function's entry point and command as the template sets them (ImageConfig), its
    # interpreter this machine's Python, run in the task root with nothing else on the path (-S)
    template = yaml.load((REPO_ROOT / "deploy" / "template.yaml").read_text(), Loader=_CloudFormationLoader)
    image_config = template["Resources"]["GatewayStreamFunction"]["Properties"]["ImageConfig"]
    entry, command = image_config["EntryPoint"], image_config["Command"]
    assert entry[0] == "/var/lang/bin/python3", "the Lambda Python base image's interpreter"
    argv = [lambda_python(), "-S", *entry[1:], *command]
    with RuntimeApi() as runtime, ApiGateway(runtime) as gateway:
        env = {"PATH": os.environ["PATH"], "TRITON_GRPC_URL": "127.0.0.1:9", "HEALTH_TIMEOUT_SECONDS": "1"}
        env |= image_environment() | {"AWS_LAMBDA_RUNTIME_API": runtime.address}
        process = subprocess.Popen(argv, cwd=task_root, env=env)
        try:
            # WHEN API Gateway's streaming integration sends it a /health request
            response = httpx.get(f"{gateway.url}/health", timeout=60)
        finally:
            process.terminate()
            process.wait(timeout=30)
    # THEN it answers, through the Runtime API's streaming response, the honest 503 of a missing Triton
    assert response.status_code == 503
    assert response.json()["triton"] == "unavailable"
    assert runtime.init_errors == []


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as plain values."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _any_tag)
