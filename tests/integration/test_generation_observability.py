"""What a generation leaves on a gateway process's stdout: its time to first token, tokens out and decode
rate, in the access record and as EMF metrics (never as dimensions)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from localdev.tritonserver import TritonServer
from tests.telemetry import GatewayProcess, access_records, emf_documents, gateway_process, metric


@pytest.fixture(scope="module")
def gateway(triton: TritonServer) -> Iterator[GatewayProcess]:
    with gateway_process({"TRITON_GRPC_URL": triton.grpc_url}) as process:
        yield process


def lines_of(gateway: GatewayProcess, path: str, body: dict) -> tuple[str, dict, dict]:
    mark = gateway.mark()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        text = client.post(path, json=body).text
    out = gateway.wait_for(lambda o: len(access_records(o)) >= 1, since=mark)
    [doc], [record] = emf_documents(out), access_records(out)
    return text, doc, record


def test_a_stream_reports_ttft_tokens_and_rate(gateway):
    body = {"text_input": "observe", "stream": True, "sampling_parameters": json.dumps({"max_tokens": 7})}
    text, doc, record = lines_of(gateway, "/v2/models/text_gen/generate_stream", body)
    assert text.count("data:") == 7
    assert record["tokens_out"] == 7
    assert 0 < record["ttft_ms"] <= record["duration_ms"]
    assert record["tokens_per_s"] > 0
    for name, unit in (
        ("TimeToFirstToken", "Milliseconds"),
        ("TokensOut", "Count"),
        ("TokensPerSecond", "Count/Second"),
    ):
        got_unit, [value], sets = metric(doc, name)
        assert got_unit == unit and value > 0
        assert ["service"] in sets
    assert metric(doc, "TokensOut")[1] == [7]
    assert metric(doc, "TimeToFirstToken")[1] == [record["ttft_ms"]]


def test_usage_counts_are_the_tokens_out(gateway):
    # The vLLM contract's num_output_tokens counts: one response holding 5 tokens is 5 tokens out.
    body = {"model": "text_gen", "prompt": "count", "max_tokens": 5}
    text, doc, record = lines_of(gateway, "/v1/completions", body)
    assert json.loads(text)["usage"]["completion_tokens"] == 5
    assert record["tokens_out"] == 5 and metric(doc, "TokensOut")[1] == [5]
    assert "tokens_per_s" not in record  # one response: no rate between tokens


def test_a_plain_model_counts_one_token_and_no_key_without_api_gateway(gateway):
    body = {"TEXT": ["a"]}
    text, doc, record = lines_of(gateway, "/v2/models/text_bytes/generate", body)
    assert "UPPER" in text
    assert record["tokens_out"] == 1  # a plain model's one response counts as one
    # Only API Gateway names the key (its id, in the event); under uvicorn there is none to name.
    assert "api_key_id" not in record and "api_key_id" not in doc
