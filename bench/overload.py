"""One gateway process under 4x overload, beside Triton's own endpoints, same open-loop load.

The model is sleep_model: 20 ms an execution, one instance (50 inferences/s), a 150 ms REJECT queue timeout.
200 requests/s for 8 s go straight to Triton's HTTP (v2 JSON), then to its gRPC (the gateway's transport,
no gateway), then through one uvicorn gateway process (POST /infer); with ``--before PATH`` also through a
gateway run from another checkout (e.g. a copy of main), so a change is measured against what it replaces
in the same run. Prints the p50/p99 of shed (503) and accepted (200) answers of each and the goal: gateway
shed p99 <= Triton's HTTP + 100 ms, accepted p99 <= 400 ms.

    .venv/bin/python bench/overload.py [--rate 200] [--seconds 8] [--before /work/main]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from localdev import fleet  # noqa: E402
from localdev.load import Outcome, percentile, sleep_body  # noqa: E402
from localdev.model_repo import build_model_repository  # noqa: E402
from localdev.paths import LOCAL_MODEL_REPOSITORY  # noqa: E402
from localdev.tritonserver import TritonServer  # noqa: E402
from service.triton.protos import service_pb2, service_pb2_grpc  # noqa: E402

MODEL = "sleep_model"


async def open_loop(
    url: str, body: Callable[[int], dict[str, Any]], rate: float, seconds: float, timeout: float
) -> list[Outcome]:
    """``localdev.load.open_loop`` on aiohttp, whose client costs a fraction of httpx's CPU a request: at 200
    requests/s on two shared cores the load client must not be what is measured."""
    count = round(rate * seconds)
    bodies = [orjson.dumps(body(index)) for index in range(count)]
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:
        began = time.monotonic()

        async def one(index: int) -> Outcome:
            start = time.monotonic()
            try:
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    answer = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                return Outcome(start - began, time.monotonic() - start, 0, type(exc).__name__, None)
            error = "" if status == 200 else answer[:200].decode(errors="replace")
            return Outcome(start - began, time.monotonic() - start, status, error, None)

        tasks = []
        for index in range(count):
            await asyncio.sleep(max(began + index / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(one(index)))
        return list(await asyncio.gather(*tasks))


async def grpc_open_loop(url: str, rate: float, seconds: float, timeout: float) -> list[Outcome]:
    """The same schedule straight to Triton's gRPC endpoint (one asyncio channel, as the gateway has)."""
    count = round(rate * seconds)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="X", datatype="INT32")
    tensor.shape.extend([1, 1])
    request.raw_input_contents.append(np.int32([1]).tobytes())
    async with grpc.aio.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(5):
            await stub.ModelInfer(request, timeout=timeout)
        began = time.monotonic()

        async def one() -> Outcome:
            start = time.monotonic()
            try:
                await stub.ModelInfer(request, timeout=timeout)
                status, error = 200, ""
            except grpc.RpcError as exc:
                # Triton's shed (UNAVAILABLE "Request timeout expired") is the gateway's 503.
                status, error = (503 if exc.code() == grpc.StatusCode.UNAVAILABLE else 0), str(exc.details())
            return Outcome(start - began, time.monotonic() - start, status, error, None)

        tasks = []
        for index in range(count):
            await asyncio.sleep(max(began + index / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(one()))
        return list(await asyncio.gather(*tasks))


def run_load(url: str, body: Callable[[int], dict[str, Any]], **load: float) -> list[Outcome]:
    return asyncio.run(open_loop(url, body, load["rate"], load["seconds"], load["timeout"]))


def triton_body(index: int) -> dict[str, Any]:
    return {"inputs": [{"name": "X", "datatype": "INT32", "shape": [1, 1], "data": [index]}]}


def start_gateway(triton: TritonServer, log: Path, root: Path) -> fleet.Gateway:
    gateway = fleet.Gateway({"TRITON_GRPC_URL": triton.grpc_url}, log)
    # uvicorn imports service.app from its working directory: the checkout under test.
    original, fleet.REPO_ROOT = fleet.REPO_ROOT, root
    try:
        gateway.start()
    finally:
        fleet.REPO_ROOT = original
    gateway.wait_started()
    return gateway


def warm(url: str, path: str, body: Any) -> None:
    with httpx.Client(timeout=10) as client:
        for index in range(5):
            client.post(f"{url}{path}", json=body(index)).raise_for_status()
            time.sleep(0.05)


def row(label: str, outcomes: list[Outcome]) -> tuple[float, float]:
    accepted = [o.seconds for o in outcomes if o.ok]
    shed = [o.seconds for o in outcomes if o.status == 503]
    other = len(outcomes) - len(accepted) - len(shed)

    def ms(values: list[float], fraction: float) -> str:
        return f"{1000 * percentile(values, fraction):7.0f}"

    print(
        f"  {label:30s} {len(accepted):6d} {ms(accepted, 0.5)} {ms(accepted, 0.99)}"
        f" {len(shed):6d} {ms(shed, 0.5)} {ms(shed, 0.99)} {other:6d}"
    )
    return percentile(shed, 0.99), percentile(accepted, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s (default 200: 4x capacity)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of load (default 8)")
    parser.add_argument("--before", type=Path, help="another checkout's gateway, measured too")
    args = parser.parse_args()
    repository = build_model_repository(LOCAL_MODEL_REPOSITORY)
    load = {"rate": args.rate, "seconds": args.seconds, "timeout": 30.0}
    with tempfile.TemporaryDirectory(prefix="overload-") as work:
        logs = Path(work)
        with TritonServer(repository, models=[MODEL], log_dir=logs, work_dir=logs / "triton") as triton:
            print(
                f"{MODEL} (20 ms, one instance, 150 ms REJECT queue timeout): {args.rate:.0f} req/s for "
                f"{args.seconds:.0f} s, open loop"
            )
            columns = ("200", "p50 ms", "p99 ms", "503", "p50 ms", "p99 ms", "other")
            print(f"  {'':30s} " + " ".join(f"{c:>{6 if c[0] != 'p' else 7}s}" for c in columns))
            path = f"/v2/models/{MODEL}/infer"
            warm(triton.http_url, path, triton_body)
            theirs = row("Triton's own HTTP", run_load(triton.http_url + path, triton_body, **load))
            time.sleep(1)  # Triton's queue empties between runs
            row("Triton's own gRPC", asyncio.run(grpc_open_loop(triton.grpc_url, **load)))
            time.sleep(1)
            checkouts = [("one gateway process", ROOT)]
            if args.before is not None:
                checkouts.append((f"one gateway process ({args.before.name})", args.before))
            results = {}
            for label, root in checkouts:
                gateway = start_gateway(triton, logs / f"gateway-{len(results)}.log", root)
                try:
                    warm(gateway.url, "/infer", lambda i: sleep_body(i, MODEL))
                    results[label] = row(
                        label, run_load(gateway.url + "/infer", lambda i: sleep_body(i, MODEL), **load)
                    )
                finally:
                    gateway.stop()
                time.sleep(1)  # Triton's queue empties between runs
    shed, accepted = results["one gateway process"]
    shed_met = "met" if shed <= theirs[0] + 0.1 else "NOT met"
    accepted_met = "met" if accepted <= 0.4 else "NOT met"
    print(
        f"goal: gateway shed p99 {1000 * shed:.0f} ms <= Triton's {1000 * theirs[0]:.0f} + 100 ms: "
        f"{shed_met}; "
        f"accepted p99 {1000 * accepted:.0f} ms <= 400 ms: {accepted_met}"
    )


if __name__ == "__main__":
    main()
