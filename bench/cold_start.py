"""Cold starts in fresh interpreters: the gateway's Lambda entry point (import + one /health event) against
the old Chalice app's import (``bench/old_app/app.py``, chalice + numpy + tritonclient.grpc), alternated so
both see the same machine; peak RSS is the kernel's VmHWM.

``bench/bench.py`` runs it among the other goals; alone, against its own local Triton (densenet_onnx):

    .venv/bin/python bench/cold_start.py [--runs 9] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OLD_APP = Path(__file__).resolve().parent / "old_app"

_PEAK = "int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024"
# The template's default (deploy/template.yaml, LogLevel): every request writes its access record, as
# deployed. The probes' figures are the last line of their stdout, after the handler's own lines.
LOG_LEVEL = "INFO"

# Only what the Lambda runtime does: import the handler module, then call it with an event and a context.
NEW_PROBE = f"""
import time
began = time.perf_counter()
import service.lambda_handler as entry
imported = time.perf_counter() - began
import json, sys

class Context:
    aws_request_id = "cold-start"
    function_name = "triton-gateway"
    def get_remaining_time_in_millis(self):
        return 30_000

event = json.load(open(sys.argv[1]))
began = time.perf_counter()
response = entry.handler(event, Context())
first = time.perf_counter() - began
print(json.dumps({{"import_ms": imported * 1000, "first_ms": first * 1000, "status": response["statusCode"],
                  "rss_mb": {_PEAK}}}))
"""

OLD_PROBE = f"""
import time
began = time.perf_counter()
import app
imported = time.perf_counter() - began
import json
print(json.dumps({{"import_ms": imported * 1000, "rss_mb": {_PEAK}}}))
"""


def _run(probe: str, cwd: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise RuntimeError(f"cold-start probe failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def probe_environment(**settings: str) -> dict[str, str]:
    """This process's environment with ``settings``, as the probes run: with bytecode, as in the image."""
    env = {**os.environ, **settings}
    env.pop("PYTHONPATH", None)
    # The image ships every module's bytecode (Dockerfile.lambda's compileall), and the unmeasured first run
    # writes it here; where the environment says not to write any, every probe would compile the gateway's
    # (and the old app's) modules from source instead, which no deployed cold start does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cold_starts(grpc_url: str, health_event: dict[str, Any], runs: int = 5) -> dict[str, Any]:
    """Medians over ``runs`` alternated fresh processes of each kind, and every sample."""
    env = probe_environment(TRITON_GRPC_URL=grpc_url, LOG_LEVEL=LOG_LEVEL)
    new: list[dict[str, Any]] = []
    old: list[dict[str, Any]] = []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(health_event, handle)
    try:
        # One unmeasured run of each: bytecode caches and the page cache as a warm container has them.
        _run(NEW_PROBE, ROOT, env, handle.name)
        _run(OLD_PROBE, OLD_APP, env)
        for _ in range(runs):
            new.append(_run(NEW_PROBE, ROOT, env, handle.name))
            old.append(_run(OLD_PROBE, OLD_APP, env))
    finally:
        os.unlink(handle.name)
    assert all(sample["status"] == 200 for sample in new), new

    def median(samples: list[dict[str, Any]], key: str) -> float:
        return statistics.median(sample[key] for sample in samples)

    return {
        "runs": runs,
        "new_import_ms": median(new, "import_ms"),
        "new_first_health_ms": median(new, "first_ms"),
        "new_total_ms": statistics.median(s["import_ms"] + s["first_ms"] for s in new),
        "new_rss_mb": median(new, "rss_mb"),
        "old_import_ms": median(old, "import_ms"),
        "old_rss_mb": median(old, "rss_mb"),
        "samples": {"new": new, "old": old},
    }


def import_time_report(top: int = 15) -> str:
    """``python -X importtime`` of the handler: the ``top`` imports by cumulative time."""
    env = probe_environment(TRITON_GRPC_URL="127.0.0.1:9")
    # Once unmeasured, as the cold starts: the bytecode is written, as the image has it.
    subprocess.run([sys.executable, "-c", "import service.lambda_handler"], cwd=ROOT, env=env, timeout=120)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import service.lambda_handler"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, self_us, cumulative_us, name = (
            part.strip() for part in line.replace("import time:", "|").split("|")
        )
        rows.append((int(cumulative_us), int(self_us), name))
    total = max(row[0] for row in rows)
    # Nested imports are indented in the name; the biggest cumulative figures are the packages to look at.
    lines = [
        f"{'cumulative ms':>13} {'self ms':>8}  module   (total {total / 1000:.0f} ms, {len(rows)} modules)"
    ]
    for cumulative, self_us, name in sorted(rows, reverse=True)[:top]:
        lines.append(f"{cumulative / 1000:>13.1f} {self_us / 1000:>8.1f}  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="cold starts alone, against a local Triton")
    parser.add_argument("--runs", type=int, default=9, help="fresh processes of each kind (default 9)")
    parser.add_argument("--importtime", action="store_true", help="print the handler's slowest imports too")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench import image_environment  # beside this script
    from localdev.model_repo import build_model_repository
    from localdev.paths import LOCAL_MODEL_REPOSITORY
    from localdev.tritonserver import TritonServer
    from tests.lambda_events import load_event

    os.environ.update(image_environment())  # the probes run with the image's environment
    with TritonServer(
        build_model_repository(LOCAL_MODEL_REPOSITORY), models=["densenet_onnx"], log_name="cold-start"
    ) as triton:
        cold = cold_starts(triton.grpc_url, load_event("health"), runs=args.runs)
    ratio = cold["new_total_ms"] / cold["old_import_ms"]
    print(
        f"median of {cold['runs']}: gateway import {cold['new_import_ms']:.0f} ms + first /health"
        f" {cold['new_first_health_ms']:.0f} ms, peak RSS {cold['new_rss_mb']:.0f} MB; old Chalice app import"
        f" {cold['old_import_ms']:.0f} ms, {cold['old_rss_mb']:.0f} MB -> {ratio:.2f}x (goal <= 2.0x)"
    )
    if args.importtime:
        print(import_time_report())


if __name__ == "__main__":
    main()
