"""Time to first token and to the last event of ``generate_stream``: the gateway (uvicorn, gRPC
``ModelStreamInfer`` underneath) against Triton's own HTTP frontend, same model and body, alternated in one
run so a busy machine slows both alike. Printed as medians and the gateway/Triton ratio.

    .venv/bin/python bench/generate.py [--iterations 40] [--tokens 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench import uvicorn_app  # noqa: E402  (beside this script)
from localdev.model_repo import build_model_repository  # noqa: E402
from localdev.tritonserver import TritonServer  # noqa: E402


def uvicorn_gateway(grpc_url: str) -> AbstractContextManager[str]:
    """The gateway in its own uvicorn process (httptools), as ``./dev.sh run`` serves it; its base URL."""
    return uvicorn_app("service.app:app", {"TRITON_GRPC_URL": grpc_url, "LOG_LEVEL": "WARNING"})


def stream_once(client: httpx.Client, url: str, body: dict[str, object]) -> tuple[float, float]:
    """(ms to the first event, ms to the stream's end) of one generate_stream call."""
    began = time.perf_counter()
    first = 0.0
    with client.stream("POST", url, json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and not first:
                first = (time.perf_counter() - began) * 1000
    return first, (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=8)
    args = parser.parse_args()
    body = {
        "text_input": "bench",
        "stream": True,
        "sampling_parameters": json.dumps({"max_tokens": args.tokens}),
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        TritonServer(
            build_model_repository(Path(tmp)), models=["text_gen"], log_name="bench-generate"
        ) as triton,
        uvicorn_gateway(triton.grpc_url) as gateway,
        httpx.Client(timeout=30) as client,
    ):
        paths = {
            "Triton HTTP generate_stream": f"{triton.http_url}/v2/models/text_gen/generate_stream",
            "gateway generate_stream (uvicorn, gRPC stream)": f"{gateway}/v2/models/text_gen/generate_stream",
        }
        samples: dict[str, list[tuple[float, float]]] = {label: [] for label in paths}
        for _ in range(3):
            for url in paths.values():
                stream_once(client, url, body)
        for _ in range(args.iterations):
            for label, url in paths.items():
                samples[label].append(stream_once(client, url, body))
    medians = {
        label: (statistics.median(s[0] for s in got), statistics.median(s[1] for s in got))
        for label, got in samples.items()
    }
    print(f"generate_stream, text_gen, {args.tokens} tokens at 10 ms, {args.iterations} alternated rounds")
    print(f"{'path':50} {'TTFT ms':>9} {'last ms':>9}")
    for label, (first, last) in medians.items():
        print(f"{label:50} {first:9.2f} {last:9.2f}")
    (t_first, t_last), (g_first, g_last) = medians.values()
    print(f"gateway / Triton: TTFT {g_first / t_first:.2f}x, whole stream {g_last / t_last:.2f}x")


if __name__ == "__main__":
    main()
