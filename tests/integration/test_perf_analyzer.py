"""Triton's own perf_analyzer (HTTP, binary tensors) runs against the gateway as it runs against Triton: it
reads the model's metadata and config and the server's statistics through the gateway's v2 routes, and
every request it sends reaches Triton. Latency figures belong to bench/; here only that it works."""

from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient

from localdev.perf_analyzer import run_perf_analyzer


def inference_count(triton_grpc: grpcclient.InferenceServerClient, model: str) -> int:
    """Items Triton inferred for ``model``, over all its versions."""
    stats = triton_grpc.get_inference_statistics(model, as_json=True)["model_stats"]
    return sum(int(version.get("inference_count", 0)) for version in stats)


# classifier_batched batches (max_batch_size 8): perf_analyzer sends batches of 2 and reads its two versions.
@pytest.mark.parametrize(("model", "extra"), [("densenet_onnx", ()), ("classifier_batched", ("-b", "2"))])
def test_perf_analyzer_measures_the_gateway(
    gateway_url: str, triton_grpc, model: str, extra: tuple[str, ...]
):
    before = inference_count(triton_grpc, model)
    # WHEN perf_analyzer measures the gateway at concurrency 1 over HTTP, 40 requests a window
    result = run_perf_analyzer(gateway_url.removeprefix("http://"), model, requests=40, extra=extra)
    # THEN it finishes with a measurement, and Triton ran at least that window's requests
    assert result.infer_per_sec > 0
    assert 0 < result.p50_ms <= result.p99_ms
    assert inference_count(triton_grpc, model) - before >= 40
