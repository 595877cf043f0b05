"""Triton's own response cache, opted into per model: a repeated request is answered without running it."""

from __future__ import annotations

import random

import httpx
import tritonclient.http as httpclient

from localdev.load import sleep_body
from tests.settle import settled


def cache_counts(triton_http: httpclient.InferenceServerClient) -> tuple[int, int, int]:
    stats = triton_http.get_inference_statistics("sleep_cached")["model_stats"][0]
    inference = stats["inference_stats"]
    return inference["success"]["count"], inference["cache_hit"]["count"], stats["execution_count"]


def test_repeated_request_is_answered_from_tritons_response_cache(
    client: httpx.Client, triton_http: httpclient.InferenceServerClient
):
    # GIVEN a deterministic model whose config enables the response cache, on a Triton with --cache-config,
    # and an input no earlier test sent
    value = random.randrange(1, 2**31)
    successes, hits, executions = cache_counts(triton_http)

    # WHEN the same request comes twice through the gateway
    first = client.post("/infer", json=sleep_body(value, "sleep_cached"))
    second = client.post("/infer", json=sleep_body(value, "sleep_cached"))

    # THEN both carry the model's answer, Triton ran the model once and answered the second from its cache
    assert first.status_code == second.status_code == 200
    assert first.json()["outputs"] == second.json()["outputs"]
    assert first.json()["outputs"][0]["data"] == [value]
    want = (successes + 2, hits + 1, executions + 1)
    assert settled(lambda: cache_counts(triton_http), want) == want
