"""What the real Mangum handler leaves behind for each API Gateway event: EMF metrics and exactly one JSON
access record on stdout (read back as CloudWatch would), and X-Ray subsegments sent to a real UDP socket
standing in for the daemon, as the Lambda runtime sets the environment for a traced invocation."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys

import pytest

from tests import bodies
from tests.image_reference import jpeg
from tests.lambda_events import LambdaContext, load_event
from tests.telemetry import ROOT, access_records, emf_documents, metric, metric_names, xray_daemon

ROOT_ID = "1-6753c3a1-0f1e2d3c4b5a69788796a5b4"
PARENT_ID = "53995c3f42cd8ad8"
LAMBDA_REQUEST_ID = "8f5e3c1a-0b7d-4c2e-9a61-3d2f1e0c9b8a"
DENSENET = json.dumps(bodies.DENSENET)
SLOW = json.dumps(bodies.slow(3000))


@pytest.fixture
def traced(monkeypatch):
    """The environment of a sampled, traced invocation, with a stand-in X-Ray daemon to receive it."""
    with xray_daemon() as daemon:
        monkeypatch.setenv("LAMBDA_TASK_ROOT", str(ROOT))
        monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", daemon.address)
        monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT_ID};Parent={PARENT_ID};Sampled=1")
        yield daemon


def invoke(handler, capsys, event, **context):
    capsys.readouterr()
    response = handler(event, LambdaContext(aws_request_id=LAMBDA_REQUEST_ID, **context))
    out = capsys.readouterr().out
    return response, emf_documents(out), access_records(out)


def test_one_access_record_with_every_id(lambda_handler, capsys, traced, caplog):
    caplog.set_level(logging.INFO)
    event = load_event("infer", DENSENET)
    response, [doc], [record] = invoke(lambda_handler, capsys, event)
    assert response["statusCode"] == 200

    api_request_id = event["requestContext"]["requestId"]
    assert record["request_id"] == record["api_request_id"] == api_request_id
    assert record["lambda_request_id"] == LAMBDA_REQUEST_ID
    assert record["xray_trace_id"] == ROOT_ID
    assert (record["method"], record["path"], record["route"], record["status"]) == (
        "POST",
        "/api/infer",
        "/infer",
        200,
    )
    assert (record["model"], record["version"]) == ("densenet_onnx", "1")
    assert record["duration_ms"] >= record["triton_ms"] > 0
    # Mangum's own "POST /api/infer 200" line is silenced: the record above is the only one.
    assert not [r for r in caplog.records if r.name.startswith("mangum")]

    assert doc["request_id"] == api_request_id
    assert doc["route"] == "/infer" and doc["status_class"] == "2xx"
    assert metric(doc, "Requests")[:2] == ("Count", [1])
    assert metric(doc, "TritonLatency")[0] == "Milliseconds"


def test_a_bad_body_counts_as_4xx_of_its_model_and_runs_nothing(lambda_handler, capsys):
    response, [doc], [record] = invoke(lambda_handler, capsys, load_event("infer", b'{"name": "x"}'))
    assert response["statusCode"] == 400
    assert (doc["status_class"], doc["model"]) == ("4xx", "densenet_onnx")  # the default model
    by_status = [["service", "status_class"], ["service", "route", "status_class"]]
    assert metric(doc, "Requests")[1:] == ([1], [["service"], *by_status, ["service", "model"]])
    # The model was looked up (perhaps from the cache), nothing was run, and Triton did not fail.
    assert "TritonLatency" not in metric_names(doc)
    for name in {"TritonUnavailable", "TritonDeadline", "TritonRejected"} & metric_names(doc):
        assert metric(doc, name)[1] == [0]
    assert record["status"] == 400 and "triton_errors" not in record


def test_each_triton_call_is_a_subsegment_of_the_invocation(lambda_handler, capsys, traced):
    response, _, [record] = invoke(lambda_handler, capsys, load_event("infer", DENSENET))
    assert response["statusCode"] == 200
    segments = traced.segments(want=record["triton_calls"] + 1)
    [gateway] = [s for s in segments if s["name"] == "gateway"]
    calls = [s for s in segments if s["name"].startswith("Triton ")]
    assert len(calls) == record["triton_calls"]

    # The gateway's subsegment hangs from the segment the Lambda service records for the invocation.
    assert (gateway["trace_id"], gateway["parent_id"], gateway["type"]) == (ROOT_ID, PARENT_ID, "subsegment")
    assert gateway["annotations"]["request_id"] == record["request_id"]
    assert gateway["annotations"]["status"] == 200 and gateway["annotations"]["route"] == "/infer"
    assert gateway["start_time"] < gateway["end_time"]

    [infer] = [s for s in calls if s["name"] == "Triton ModelInfer"]
    assert (infer["trace_id"], infer["parent_id"], infer["namespace"]) == (ROOT_ID, gateway["id"], "remote")
    assert infer["annotations"]["model"] == "densenet_onnx"
    assert infer["annotations"]["outcome"] == "ok"
    assert infer["annotations"]["deadline_budget_s"] == 5.0  # TRITON_TIMEOUT_SECONDS of the fixture
    assert 0 < infer["annotations"]["deadline_left_ms"] <= 5000
    assert gateway["start_time"] <= infer["start_time"] < infer["end_time"] <= gateway["end_time"]
    assert not {"fault", "error"} & infer.keys()
    assert all(len(s["id"]) == 16 and int(s["id"], 16) >= 0 for s in segments)


def test_a_call_past_the_deadline_is_a_fault_with_its_budget(lambda_handler, capsys, traced):
    # 1.2 s left in the invocation: Triton gets 0.7 s, and the trace says so.
    response, [doc], [record] = invoke(lambda_handler, capsys, load_event("infer", SLOW), remaining_ms=1200)
    assert response["statusCode"] == 504
    assert metric(doc, "TritonDeadline")[1] == [1] and metric(doc, "TritonUnavailable")[1] == [0]
    [call] = [s for s in traced.segments(want=2) if s["name"] == "Triton ModelInfer"]
    assert call["annotations"]["outcome"] == "deadline"
    assert call["annotations"]["deadline_budget_s"] == 0.7
    assert call["fault"] is True
    assert record["triton_errors"] == ["deadline"]


def test_an_unsampled_invocation_sends_nothing(lambda_handler, capsys, traced, monkeypatch):
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={ROOT_ID};Parent={PARENT_ID};Sampled=0")
    response, _, [record] = invoke(lambda_handler, capsys, load_event("health"))
    assert response["statusCode"] == 200 and record["triton_calls"] >= 1
    assert traced.segments(timeout=0.3) == []


def test_the_first_invocation_of_a_process_is_its_cold_start():
    # A fresh interpreter, as a new Lambda execution environment: two invocations of one handler.
    probe = """
import sys
sys.path.insert(0, ".")
from tests.image_reference import jpeg
from tests.lambda_events import LambdaContext, load_event
import service.lambda_handler as entry
for _ in range(2):
    entry.handler(load_event("openapi"), LambdaContext())
"""
    env = {**os.environ, "POWERTOOLS_METRICS_NAMESPACE": "ColdStartTest"}
    command = [sys.executable, "-c", probe]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60)
    out = out.stdout
    first, second = emf_documents(out)
    assert metric(first, "ColdStart") == ("Count", [1], [["service"]])
    assert first["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ColdStartTest"
    assert "ColdStart" not in metric_names(second)
    records = access_records(out)
    assert [r.get("cold_start", False) for r in records] == [True, False]


def test_images_fanned_out_are_each_a_subsegment_of_the_same_request(lambda_handler, capsys, traced):
    # GIVEN three photos for densenet_onnx, which does not batch: three concurrent Triton calls
    images = [base64.b64encode(jpeg(320, 240, seed=seed)).decode() for seed in range(3)]
    event = load_event("infer", json.dumps({"images": images, "top_k": 1}))
    response, [doc], [record] = invoke(lambda_handler, capsys, event)
    assert response["statusCode"] == 200, response["body"][:300]

    # THEN the metrics count the images and time each call
    assert metric(doc, "ImagesDecoded")[:2] == ("Count", [3])
    unit, latencies, _ = metric(doc, "TritonLatency")
    assert unit == "Milliseconds" and len(latencies) == 3
    assert record["images"] == 3
    # AND each call, made on a pool thread, is a subsegment of this request's, as is the decoding
    segments = traced.segments(want=record["triton_calls"] + 2)
    [gateway] = [s for s in segments if s["name"] == "gateway"]
    calls = [s for s in segments if s["name"] == "Triton ModelInfer"]
    [decode] = [s for s in segments if s["name"] == "decode images"]
    assert len(calls) == 3 and {s["parent_id"] for s in calls} == {gateway["id"]}
    assert decode["parent_id"] == gateway["id"] and "namespace" not in decode
    assert decode["end_time"] <= min(s["start_time"] for s in calls)
