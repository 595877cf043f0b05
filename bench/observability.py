"""What observability costs: at cold start (import time) and per request (the work it adds), each printed
beside what it is measured against, in one run. No Triton needed.

- Import: ``python -X importtime -c 'import service.lambda_handler'`` in fresh interpreters (median of
  --runs): the whole handler, the share of ``service.observability`` (Powertools' EMF provider and JSON
  formatter included), and what Powertools' Tracer would add (``aws_xray_sdk.core``, imported after the
  handler so only its own modules count) — the reason ``service/observability/xray.py`` exists.
- Per request: the calls one request makes (start, a model lookup, two Triton calls, finish: one EMF line
  and one access record written to /dev/null), untraced and traced (three subsegments sent to a local UDP
  socket); and a 404 event through the real Mangum handler with observability on and off.

    .venv/bin/python bench/observability.py [--runs 5] [--iterations 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (  # noqa: E402
    AmazonCloudWatchEMFProvider,
)

from service import observability  # noqa: E402
from service.observability import emf  # noqa: E402
from service.observability.observation import Finished  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.triton import Deadline  # noqa: E402
from tests.lambda_events import LambdaContext, load_event  # noqa: E402

_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def import_times(statement: str, runs: int) -> dict[str, float]:
    """Median cumulative import time (ms) of each module ``statement`` imports, and under
    ``"own:service.observability"`` what that package alone brings: its children that are not other
    ``service`` modules (settings and errors would be imported anyway)."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        # importtime prints children before their parent, one level deeper.
        seen: dict[str, float] = {}
        pending: list[tuple[int, str, float]] = []
        for match in _IMPORT_LINE.finditer(out):
            depth, name, ms = len(match.group(3)), match.group(4), int(match.group(2)) / 1000
            seen.setdefault(name, ms)
            children = [c for c in pending if c[0] > depth]
            pending = [c for c in pending if c[0] <= depth] + [(depth, name, ms)]
            if name == "service.observability" and children:
                # Direct children only (deeper ones are inside their cumulative times already).
                top = min(d for d, _, _ in children)
                seen["own:service.observability"] = sum(
                    child_ms
                    for d, child, child_ms in children
                    if d == top and (not child.startswith("service.") or child.startswith(name + "."))
                )
        for name, ms in seen.items():
            samples.setdefault(name, []).append(ms)
    return {name: statistics.median(values) for name, values in samples.items()}


def per_call_us(call: Callable[[], object], iterations: int) -> float:
    """Median over 5 rounds of the mean time of ``call`` (µs)."""
    for _ in range(min(200, iterations)):
        call()
    rounds = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(iterations):
            call()
        rounds.append((time.perf_counter() - began) / iterations * 1e6)
    return statistics.median(rounds)


def one_request() -> None:
    """The observability calls of one /infer request: start, lookup, two Triton calls, finish."""
    observation = observability.start_request("POST", "/api/infer", "c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    deadline = Deadline(10.0)
    with observability.triton_call("ModelMetadata", ("densenet_onnx", ""), deadline):
        pass
    observability.note_model("densenet_onnx", "")
    with observability.triton_call("ModelInfer", ("densenet_onnx", ""), deadline):
        pass
    observability.note_model("densenet_onnx", "1")
    observability.finish_request(observation, 200, "/infer", 802_000, 4_200)


def powertools_document(metrics: list[tuple[str, str, float]]) -> dict[str, object]:
    """The aggregate of one request's ``metrics`` through Powertools' EMF provider (one directive)."""
    provider = AmazonCloudWatchEMFProvider(namespace="TritonGateway", service="triton-gateway")
    for name, unit, value in metrics:
        provider.add_metric(name, unit, value)
    return dict(provider.serialize_metric_set())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per import measurement")
    parser.add_argument("--iterations", type=int, default=2000, help="requests per timing round")
    args = parser.parse_args()

    handler_times = import_times("import service.lambda_handler", args.runs)
    with_sdk = import_times("import service.lambda_handler; import aws_xray_sdk.core", args.runs)
    print(f"Import time, median of {args.runs} fresh interpreters (ms, cumulative)")
    rows = [
        ("service.lambda_handler (all of it)", handler_times["service.lambda_handler"]),
        ("  of which observability's own modules", handler_times.get("own:service.observability", 0.0)),
        ("    of which aws_lambda_powertools", handler_times.get("aws_lambda_powertools", 0.0)),
        ("aws_xray_sdk.core after it (Powertools Tracer)", with_sdk.get("aws_xray_sdk.core", 0.0)),
    ]
    for label, ms in rows:
        print(f"  {label:<48} {ms:8.1f}")

    settings = Settings()
    observability.configure(settings)
    logging.getLogger("service").setLevel(logging.INFO)
    sink = open(os.devnull, "w")  # noqa: SIM115 - kept for the whole run
    print(f"\nPer request, mean of {args.iterations} (µs; EMF line and access record written to /dev/null)")
    with contextlib.redirect_stdout(sink):
        untraced = per_call_us(one_request, args.iterations)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
            daemon.bind(("127.0.0.1", 0))
            daemon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            os.environ.update(
                LAMBDA_TASK_ROOT=str(ROOT),
                AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
                _X_AMZN_TRACE_ID="Root=1-6753c3a1-0f1e2d3c4b5a69788796a5b4;Parent=53995c3f42cd8ad8;Sampled=1",
            )
            traced = per_call_us(one_request, args.iterations)
            for name in ("LAMBDA_TASK_ROOT", "AWS_XRAY_DAEMON_ADDRESS", "_X_AMZN_TRACE_ID"):
                del os.environ[name]
        observability.configure(Settings(powertools_metrics_disabled=True))
        record_only = per_call_us(one_request, args.iterations)
        observability.configure(settings)
        logging.getLogger("service.access").setLevel(logging.WARNING)
        metrics_only = per_call_us(one_request, args.iterations)
        logging.getLogger("service.access").setLevel(logging.NOTSET)

        from service.lambda_handler import handler

        event, context = load_event("health"), LambdaContext()
        event["path"] = event["requestContext"]["path"] = "/api/no-such-route"
        observed = per_call_us(lambda: handler(event, context), args.iterations // 4)
        observability.configure(Settings(powertools_metrics_disabled=True))
        logging.getLogger("service.access").setLevel(logging.WARNING)
        quiet = per_call_us(lambda: handler(event, context), args.iterations // 4)
    finished = Finished(200, "/infer", 3.2, False)
    observation = observability.start_request("POST", "/api/infer", "c6af9ac6-7b61-11e6-9a41-93e8deadbeef")
    observation.infer_ms, observation.triton_calls, observation.model = [1.4], 2, "densenet_onnx"
    ours = per_call_us(lambda: emf.document(observation, finished, "TritonGateway", "triton-gateway"), 2000)
    document = emf.document(observation, finished, "TritonGateway", "triton-gateway")
    metrics = [
        (d["Name"], d["Unit"], v)
        for d in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        for v in (document[d["Name"]] if isinstance(document[d["Name"]], list) else [document[d["Name"]]])
    ]
    theirs = per_call_us(lambda: powertools_document(metrics), 2000)
    rows = [
        ("metrics + access record (untraced)", untraced),
        ("metrics + access record + 3 X-Ray subsegments", traced),
        ("access record only (POWERTOOLS_METRICS_DISABLED)", record_only),
        ("metrics only (LOG_LEVEL=WARNING)", metrics_only),
        ("a 404 event through Mangum, observed", observed),
        ("the same, metrics and record off", quiet),
        ("one EMF document, service.observability.emf", ours),
        ("the same metrics through Powertools' provider", theirs),
    ]
    for label, us in rows:
        print(f"  {label:<48} {us:8.1f}")
    print(f"  => observability is {observed - quiet:.0f} µs of the {observed:.0f} µs of a 404 event")


if __name__ == "__main__":
    main()
