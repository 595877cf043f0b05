"""The Lambda path of this checkout against another one's, same run: /infer b64 and /v2 binary through each
checkout's own Mangum handler (its own venv, its own code), on one local Triton, in alternated child
processes, so a busy machine slows both alike. Prints each path's median p50 and the ratio this/other.

    .venv/bin/python bench/lambda_ab.py --before PATH [--rounds 5] [--iterations 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench import image_environment  # noqa: E402  (beside this script)
from localdev.model_repo import build_model_repository  # noqa: E402
from localdev.paths import LOCAL_MODEL_REPOSITORY  # noqa: E402
from localdev.tritonserver import TritonServer  # noqa: E402

PATHS = ("/infer b64", "/v2 binary")

# Run by each checkout's python in that checkout: its handler, its bench's event builders, one Triton.
CHILD = """
import base64, json, statistics, sys, time
sys.path.insert(0, "bench")
import numpy as np
from bench import INPUT, OUTPUT, SHAPE, event_for, v2_binary_request
from tests.lambda_events import LambdaContext
from service.lambda_handler import handler

x = np.random.default_rng(0).random((1, *SHAPE), dtype=np.float32).reshape(SHAPE)
b64 = base64.b64encode(x.tobytes()).decode()
b64_body = json.dumps({"inputs": [{"name": INPUT, "datatype": "FP32", "shape": SHAPE, "b64": b64}],
                       "outputs": [{"name": OUTPUT, "b64": True}]})
binary, size = v2_binary_request(x)
events = {"/infer b64": event_for("infer", b64_body),
          "/v2 binary": event_for("v2_infer", binary, {"Inference-Header-Content-Length": str(size)})}
context = LambdaContext()
took = {name: [] for name in events}
for round in range(int(sys.argv[1]) + 20):
    for name, event in events.items():
        began = time.perf_counter()
        answer = handler(event, context)
        spent = (time.perf_counter() - began) * 1000
        assert answer["statusCode"] == 200, answer
        if round >= 20:
            took[name].append(spent)
print(json.dumps({name: statistics.median(samples) for name, samples in took.items()}))
"""


def child(checkout: Path, grpc_url: str, iterations: int) -> dict[str, float]:
    env = {**os.environ, **image_environment(), "TRITON_GRPC_URL": grpc_url, "LOG_LEVEL": "INFO"}
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", CHILD, str(iterations)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (with its .venv)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    repository = build_model_repository(LOCAL_MODEL_REPOSITORY)
    runs: dict[str, list[dict[str, float]]] = {"this": [], "before": []}
    with TritonServer(repository) as triton:
        for _ in range(args.rounds):
            runs["this"].append(child(ROOT, triton.grpc_url, args.iterations))
            runs["before"].append(child(args.before.resolve(), triton.grpc_url, args.iterations))
    print(f"Mangum handler, p50 ms: median of {args.rounds} alternated processes x {args.iterations} calls")
    print(f"{'path':<14}{'this':>8}{'before':>8}{'ratio':>8}")
    for path in PATHS:
        this = statistics.median(run[path] for run in runs["this"])
        before = statistics.median(run[path] for run in runs["before"])
        print(f"{path:<14}{this:8.2f}{before:8.2f}{this / before:8.2f}")


if __name__ == "__main__":
    main()
