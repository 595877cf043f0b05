"""What the streaming Lambda entry (``service.lambda_stream``) would cost the buffered routes, against the
Mangum entry (``service.lambda_handler``) they use, in one run against one local Triton (densenet_onnx).

Cold start: fresh interpreters, alternated, each doing what its runtime does before and at the first event
(import, connect, one /health). Per request: the same buffered requests through each entry in one process,
round-robin: a v2 b64 JSON request and a v2 binary request, as API Gateway delivers them (base64 bodies).
The Mangum figure includes serialising its answer to the JSON the managed runtime posts; the streaming
figure includes the prelude and the chunk framing it posts. Neither includes the post itself.

    .venv/bin/python bench/lambda_entries.py [--iterations 100] [--cold-runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

# The Mangum probe is cold_start's: only what the Lambda runtime does, import the handler, then one event.
from cold_start import _PEAK, LOG_LEVEL, _run, probe_environment  # noqa: E402
from cold_start import NEW_PROBE as MANGUM_PROBE  # noqa: E402

from bench import (  # noqa: E402  (beside this script)
    INPUT,
    MODEL,
    OUTPUT,
    SHAPE,
    event_for,
    image_environment,
    round_robin,
    v2_binary_request,
)
from localdev.model_repo import build_model_repository  # noqa: E402
from localdev.paths import LOCAL_MODEL_REPOSITORY  # noqa: E402
from localdev.tritonserver import TritonServer  # noqa: E402
from tests.lambda_events import LambdaContext, load_event  # noqa: E402

# What service.lambda_stream.main does before it asks for the first event, then that event.
STREAM_PROBE = f"""
import time
began = time.perf_counter()
import gc
import service.lambda_stream as entry
gc.disable()
from service.app import app
from service.triton import get_client
get_client(app.state.settings).connect()
gc.freeze()
gc.enable()
imported = time.perf_counter() - began
import asyncio, json, sys

event = json.load(open(sys.argv[1]))
context = entry.LambdaContext("cold-start", "arn", int(time.time() * 1000) + 30_000)
out = []
async def write(data):
    out.append(b"%x\\r\\n%s\\r\\n" % (len(data), data))
loop = asyncio.new_event_loop()
began = time.perf_counter()
loop.run_until_complete(entry.run_app(app, event, context, write, asyncio.Event()))
first = time.perf_counter() - began
body = b"".join(out).split(b"\\r\\n", 1)[1]
status = json.loads(body.partition(entry.DELIMITER)[0])["statusCode"]
print(json.dumps({{"import_ms": imported * 1000, "first_ms": first * 1000, "status": status,
                  "rss_mb": {_PEAK}}}))
"""


def cold_starts(grpc_url: str, runs: int) -> dict[str, dict[str, float]]:
    env = probe_environment(TRITON_GRPC_URL=grpc_url, LOG_LEVEL=LOG_LEVEL)
    samples: dict[str, list[dict[str, Any]]] = {"mangum": [], "stream": []}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(load_event("health"), handle)
    try:
        _run(MANGUM_PROBE, BENCH.parent, env, handle.name)
        _run(STREAM_PROBE, BENCH.parent, env, handle.name)
        for _ in range(runs):
            samples["mangum"].append(_run(MANGUM_PROBE, BENCH.parent, env, handle.name))
            samples["stream"].append(_run(STREAM_PROBE, BENCH.parent, env, handle.name))
    finally:
        os.unlink(handle.name)
    out = {}
    for kind, rows in samples.items():
        assert all(row["status"] == 200 for row in rows), rows
        out[kind] = {
            key: statistics.median(row[key] for row in rows) for key in ("import_ms", "first_ms", "rss_mb")
        }
        out[kind]["total_ms"] = statistics.median(row["import_ms"] + row["first_ms"] for row in rows)
    return out


def per_request(iterations: int) -> dict[str, list[float]]:
    import service.lambda_stream as stream
    from service.app import app
    from service.lambda_handler import handler

    x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    b64_body = json.dumps(
        {
            "inputs": [
                {
                    "name": INPUT,
                    "datatype": "FP32",
                    "shape": SHAPE,
                    "b64": base64.b64encode(x.tobytes()).decode(),
                }
            ],
            "outputs": [{"name": OUTPUT, "b64": True}],
        }
    )
    binary_body, json_size = v2_binary_request(x)
    events = {
        "v2 b64": event_for("v2_infer", b64_body),
        "v2 binary": event_for("v2_infer", binary_body, {"Inference-Header-Content-Length": str(json_size)}),
    }
    loop = asyncio.new_event_loop()

    def mangum(event: dict[str, Any]) -> None:
        response = handler(event, LambdaContext())
        assert response["statusCode"] == 200, response["body"][:300]
        orjson.dumps(response)

    def streamed(event: dict[str, Any]) -> None:
        out: list[bytes] = []

        async def write(data: bytes) -> None:
            out.append(b"%x\r\n%s\r\n" % (len(data), data))

        context = stream.LambdaContext("bench", "arn", int(time.time() * 1000) + 30_000)
        loop.run_until_complete(stream.run_app(app, event, context, write, asyncio.Event()))
        assert out[0].split(b"\r\n", 1)[1].startswith(b'{"statusCode":200'), out[0][:300]

    calls = {}
    for label, event in events.items():
        calls[f"{label} via Mangum"] = lambda e=event: mangum(e)
        calls[f"{label} via the streaming runtime"] = lambda e=event: streamed(e)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            return round_robin(calls, iterations)
    finally:
        loop.close()


def main() -> None:
    wanted = image_environment()
    if any(os.environ.get(key) != value for key, value in wanted.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **wanted})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="rounds of the requests (default 100)")
    parser.add_argument("--cold-runs", type=int, default=7, help="fresh processes of each entry (default 7)")
    args = parser.parse_args()
    os.environ["LOG_LEVEL"] = LOG_LEVEL
    with TritonServer(
        build_model_repository(LOCAL_MODEL_REPOSITORY),
        models=[MODEL],
        log_name="lambda-entries",
        response_cache_bytes=0,
    ) as triton:
        os.environ["TRITON_GRPC_URL"] = triton.grpc_url
        samples = per_request(args.iterations)
        cold = cold_starts(triton.grpc_url, args.cold_runs)
    print(f"{args.iterations} rounds, densenet_onnx, in-process, medians (p90) in ms; ratio streaming/Mangum")
    for label in ("v2 b64", "v2 binary"):
        mangum, streamed = samples[f"{label} via Mangum"], samples[f"{label} via the streaming runtime"]
        m, s = statistics.median(mangum), statistics.median(streamed)
        print(
            f"  {label:<10} Mangum {m:6.2f} ({np.percentile(mangum, 90):6.2f})"
            f"   streaming runtime {s:6.2f} ({np.percentile(streamed, 90):6.2f})   x{s / m:.3f}"
        )
    m, s = cold["mangum"], cold["stream"]
    print(f"cold start, median of {args.cold_runs} alternated fresh processes:")
    for label, row in (("Mangum", m), ("streaming runtime", s)):
        print(
            f"  {label:<18} import {row['import_ms']:6.0f}  first /health {row['first_ms']:5.1f}"
            f"  total {row['total_ms']:6.0f}  peak RSS {row['rss_mb']:4.0f} MB"
        )
    print(f"  total ratio streaming/Mangum x{s['total_ms'] / m['total_ms']:.3f}")


if __name__ == "__main__":
    main()
