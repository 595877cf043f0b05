"""What Dockerfile.lambda puts in the image — pyproject's runtime dependencies and service/, nothing else —
runs the Lambda handler. No Docker engine here, so the image's task root is rebuilt with pip --target."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.lambda_events import EVENTS

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT = EVENTS / "health.json"

# Run as the Lambda runtime would: the task root first, no site-packages (-S), no environment paths (-I).
PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from service.lambda_handler import handler

class Context:
    def get_remaining_time_in_millis(self):
        return 30_000

response = handler(json.load(open(sys.argv[2])), Context())
# /docs' own script, from the task root (fastapi-offline is a runtime dependency)
import re
docs = json.load(open(sys.argv[3]))
page = handler(docs, Context())
script = re.search(r"(/api/docs/assets/[^'\\x22]+swagger-ui-bundle.js)", page["body"]).group(1)
docs["path"] = script.removeprefix("/api")
docs["requestContext"]["path"] = script
asset = handler(docs, Context())
leaked = sorted({"uvicorn", "onnx", "onnxruntime", "pytriton", "httpx", "pytest"} & set(sys.modules))
print(json.dumps({"status": response["statusCode"], "body": json.loads(response["body"]), "leaked": leaked,
                  "docs_asset": [asset["statusCode"], asset["headers"]["content-type"], len(asset["body"])]}))
"""


def lambda_python() -> str:
    """The Lambda runtime's Python (3.12) where this machine has a working one, else this test's own."""
    candidate = shutil.which("python3.12")
    if candidate and subprocess.run([candidate, "-c", "import pip"], capture_output=True).returncode == 0:
        return candidate
    return sys.executable


def test_runtime_dependencies_alone_run_the_handler(tmp_path: Path) -> None:
    # GIVEN the image's task root: the runtime dependencies (for the Lambda's Python 3.12 where this machine
    # has one) and the service package, as Dockerfile.lambda lays them out
    python = lambda_python()
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    task_root = tmp_path / "task"
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(task_root),
            *dependencies,
        ],
        check=True,
    )
    shutil.copytree(REPO_ROOT / "service", task_root / "service")

    # WHEN the handler is imported in isolation and given an API Gateway event, with no Triton to reach
    env = {"PATH": os.environ["PATH"], "TRITON_GRPC_URL": "127.0.0.1:9", "HEALTH_TIMEOUT_SECONDS": "1"}
    out = subprocess.run(
        [python, "-I", "-S", "-c", PROBE, str(task_root), str(EVENT), str(EVENTS / "docs.json")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    # THEN it answers an honest 503, having imported nothing from the dev or local extras
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 503
    assert result["body"]["triton"] == "unavailable"
    assert result["leaked"] == []
    # and serves /docs' Swagger UI script itself (gzipped, as the event accepts gzip)
    status, media_type, size = result["docs_asset"]
    assert (status, media_type) == (200, "text/javascript; charset=utf-8")
    assert size > 100_000
