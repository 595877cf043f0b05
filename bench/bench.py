"""Side-by-side latency of the same densenet_onnx request (1x3x224x224 FP32) through every path, in one run
against one local Triton: direct gRPC (the floor), Triton's own HTTP (JSON and binary), the gateway's /infer
(JSON data and b64) and /v2 (tritonclient.http, JSON and binary) in-process through the Mangum handler and
over HTTP under uvicorn; the image path (a 640x480 JPEG: decode + resize + scale alone, then end to end
with top-5); and the cold-start cost of ``service.lambda_handler`` (import time, RSS).

    .venv/bin/python bench/bench.py [--iterations 50]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localdev.model_repo import build_model_repository  # noqa: E402
from localdev.paths import LOCAL_MODEL_REPOSITORY  # noqa: E402
from localdev.tritonserver import TritonServer, free_port  # noqa: E402
from tests.lambda_events import LambdaContext, load_event  # noqa: E402

MODEL, INPUT, OUTPUT = "densenet_onnx", "data_0", "fc6_1"
SHAPE = [3, 224, 224]


def measure(call: Callable[[], Any], iterations: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iterations):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


@contextmanager
def uvicorn_gateway(grpc_url: str) -> Iterator[str]:
    """The gateway in its own process, as it runs locally, so client and server do not share a GIL."""
    port = free_port()
    env = {**os.environ, "TRITON_GRPC_URL": grpc_url, "LOG_LEVEL": "WARNING"}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "service.app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            # Never measure a gateway that is not there: every sample would be a connection error.
            raise RuntimeError(f"the gateway on {url} did not answer /health (exit code {process.poll()})")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def photo_jpeg() -> bytes:
    """A deterministic 640x480 JPEG with photo-like detail (smooth gradients plus noise)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def v2_binary_event(x: np.ndarray) -> dict[str, Any]:
    """A REST event carrying the v2 binary request tritonclient.http would send for ``x``."""
    tensor = httpclient.InferInput(INPUT, SHAPE, "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [tensor], outputs=[httpclient.InferRequestedOutput(OUTPUT, binary_data=True)]
    )
    event = load_event("v2_infer", body, base64_body=True)
    event["headers"]["Inference-Header-Content-Length"] = str(json_size)
    event["multiValueHeaders"]["Inference-Header-Content-Length"] = [str(json_size)]
    return event


def cold_start(grpc_url: str) -> dict[str, float]:
    """Import time and peak RSS of the Lambda entry point in a fresh interpreter, and its first call."""
    probe = """
import resource, time, json, sys
began = time.perf_counter()
import service.lambda_handler as entry
imported = time.perf_counter() - began
sys.path.insert(0, "tests")
from tests.lambda_events import LambdaContext, load_event
began = time.perf_counter()
response = entry.handler(load_event("health"), LambdaContext())
first = time.perf_counter() - began
print(json.dumps({"import_s": imported, "first_health_s": first, "status": response["statusCode"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
    env = {**os.environ, "TRITON_GRPC_URL": grpc_url, "LOG_LEVEL": "WARNING"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    n = args.iterations

    x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    json_body = json.dumps(
        {"inputs": [{"name": INPUT, "datatype": "FP32", "shape": SHAPE, "data": x.ravel().tolist()}]}
    )
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

    os.environ["LOG_LEVEL"] = "WARNING"
    with TritonServer(
        build_model_repository(LOCAL_MODEL_REPOSITORY), models=[MODEL], log_name="bench"
    ) as triton:
        os.environ["TRITON_GRPC_URL"] = triton.grpc_url
        rows: list[tuple[str, list[float]]] = []

        grpc = grpcclient.InferenceServerClient(triton.grpc_url)
        grpc_in = grpcclient.InferInput(INPUT, SHAPE, "FP32")
        grpc_in.set_data_from_numpy(x)
        grpc_out = [grpcclient.InferRequestedOutput(OUTPUT)]
        rows.append(
            (
                "Triton gRPC, tritonclient (floor)",
                measure(lambda: grpc.infer(MODEL, [grpc_in], outputs=grpc_out), n),
            )
        )

        http = httpclient.InferenceServerClient(triton.http_address)
        for binary in (False, True):
            http_in = httpclient.InferInput(INPUT, SHAPE, "FP32")
            http_in.set_data_from_numpy(x, binary_data=binary)
            http_out = [httpclient.InferRequestedOutput(OUTPUT, binary_data=binary)]
            label = f"Triton HTTP v2, {'binary' if binary else 'JSON'}"
            rows.append((label, measure(lambda i=http_in, o=http_out: http.infer(MODEL, [i], outputs=o), n)))

        from service.lambda_handler import handler  # the environment above configures it

        context = LambdaContext()
        for label, body in (("JSON data", json_body), ("b64", b64_body)):
            # Base64, as API Gateway sends every body to the Lambda with the deployed */* binary media types.
            event = load_event("infer", body, base64_body=True)
            check = handler(event, context)
            assert check["statusCode"] == 200, check["body"][:200]
            rows.append(
                (
                    f"gateway /infer {label}, Mangum in-process",
                    measure(lambda e=event: handler(e, context), n),
                )
            )

        event = v2_binary_event(x)
        check = handler(event, context)
        assert check["statusCode"] == 200 and check["isBase64Encoded"], check["body"][:200]
        rows.append(("gateway /v2 binary, Mangum in-process", measure(lambda: handler(event, context), n)))

        photo = photo_jpeg()
        from service.images import image_input, load_image
        from service.settings import get_settings
        from service.triton import Deadline, get_client

        settings = get_settings()
        target = image_input(get_client(settings).model_info(MODEL, "", Deadline(5)), settings.image_scaling)
        rows.append(
            (
                "image 640x480 JPEG: decode+resize+scale only",
                measure(lambda: load_image(photo, target, "image", settings.max_image_pixels), n),
            )
        )
        image_body = json.dumps({"image": base64.b64encode(photo).decode(), "top_k": 5})
        event = load_event("infer", image_body, base64_body=True)
        assert handler(event, context)["statusCode"] == 200
        rows.append(
            ("gateway /infer image top-5, Mangum in-process", measure(lambda: handler(event, context), n))
        )

        with uvicorn_gateway(triton.grpc_url) as url, httpx.Client(base_url=url, timeout=30) as client:
            for label, body in (("JSON data", json_body), ("b64", b64_body)):
                headers = {"content-type": "application/json"}
                assert client.post("/infer", content=body, headers=headers).status_code == 200
                rows.append(
                    (
                        f"gateway /infer {label}, uvicorn HTTP",
                        measure(lambda b=body, h=headers: client.post("/infer", content=b, headers=h), n),
                    )
                )

            jpeg = {"content-type": "image/jpeg"}
            assert client.post("/infer", params={"top_k": 5}, content=photo, headers=jpeg).status_code == 200
            rows.append(
                (
                    "gateway /infer raw JPEG top-5, uvicorn HTTP",
                    measure(
                        lambda: client.post("/infer", params={"top_k": 5}, content=photo, headers=jpeg), n
                    ),
                )
            )
            gateway_http = httpclient.InferenceServerClient(url.removeprefix("http://"))
            for binary in (False, True):
                v2_in = httpclient.InferInput(INPUT, SHAPE, "FP32")
                v2_in.set_data_from_numpy(x, binary_data=binary)
                v2_out = [httpclient.InferRequestedOutput(OUTPUT, binary_data=binary)]
                label = f"gateway /v2 {'binary' if binary else 'JSON'}, tritonclient.http"
                rows.append(
                    (label, measure(lambda i=v2_in, o=v2_out: gateway_http.infer(MODEL, [i], outputs=o), n))
                )
            gateway_http.close()

        cold = cold_start(triton.grpc_url)
        grpc.close()
        http.close()

    floor = statistics.median(rows[0][1])
    print(f"\n{n} requests each, densenet_onnx (local stand-in), input 1x3x224x224 FP32")
    print(f"JSON body {len(json_body) / 1e6:.2f} MB, b64 body {len(b64_body) / 1e6:.2f} MB\n")
    print(f"{'path':<48} {'p50 ms':>8} {'p90 ms':>8} {'p50 / floor':>12}")
    for label, samples in rows:
        p50 = percentile(samples, 50)
        print(f"{label:<48} {p50:>8.2f} {percentile(samples, 90):>8.2f} {p50 / floor:>11.1f}x")
    print(
        f"\nservice.lambda_handler cold start: import {cold['import_s'] * 1000:.0f} ms, "
        f"first /health {cold['first_health_s'] * 1000:.0f} ms, peak RSS {cold['rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
