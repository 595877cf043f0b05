"""What a gateway under a real uvicorn process writes on stdout for each request (EMF metrics and one access
record), read back as CloudWatch would; and Triton's own log lines found from an access record's id."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from localdev.tritonserver import TritonServer
from tests.bodies import DENSENET, slow
from tests.telemetry import (
    GatewayProcess,
    access_records,
    emf_documents,
    gateway_process,
    metric,
    xray_daemon,
)


@pytest.fixture(scope="module")
def gateway(triton: TritonServer) -> Iterator[GatewayProcess]:
    with gateway_process({"TRITON_GRPC_URL": triton.grpc_url, "TRITON_TIMEOUT_SECONDS": "1"}) as process:
        yield process


def request_lines(gateway: GatewayProcess, call) -> tuple[httpx.Response, list[dict], list[dict]]:
    """The answer to ``call(client)``, and the EMF documents and access records it left on stdout."""
    mark = gateway.mark()
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        response = call(client)
    # The lines are written just before the answer's last byte; the reader thread may lag: wait for them,
    # never for a fixed time.
    text = gateway.wait_for(lambda out: len(access_records(out)) >= 1, since=mark)
    return response, emf_documents(text), access_records(text)


def aggregate(doc: dict, name: str) -> list[float]:
    """The values of ``name`` in the alarmable aggregate (dimension ``service`` only)."""
    _unit, values, sets = metric(doc, name)
    assert ["service"] in sets
    return values


def test_an_inference_emits_its_metrics_and_one_access_record(gateway):
    response, [doc], [record] = request_lines(gateway, lambda c: c.post("/infer", json=DENSENET))
    assert response.status_code == 200

    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TritonGateway"
    assert doc["service"] == "triton-gateway"
    assert (doc["route"], doc["status_class"], doc["model"]) == ("/infer", "2xx", "densenet_onnx")
    assert aggregate(doc, "Requests") == [1]
    unit, [latency], sets = metric(doc, "Latency")
    assert unit == "Milliseconds" and 0 < latency < 30_000
    assert sorted(sets) == sorted(
        [["service"], ["service", "status_class"], ["service", "route", "status_class"], ["service", "model"]]
    )
    unit, [triton_ms], _ = metric(doc, "TritonLatency")
    assert unit == "Milliseconds" and 0 < triton_ms <= latency
    for name in ("TritonUnavailable", "TritonDeadline", "TritonRejected", "TritonUpstreamError"):
        assert aggregate(doc, name) == [0]
    body = response.request.content
    assert metric(doc, "RequestBytes")[:2] == ("Bytes", [len(body)])
    assert metric(doc, "ResponseBytes")[:2] == ("Bytes", [len(response.content)])
    # The request id is searchable in the line, and never a dimension.
    assert doc["request_id"] == record["request_id"]
    assert not any("request_id" in s for d in doc["_aws"]["CloudWatchMetrics"] for s in d["Dimensions"])

    assert record["message"].startswith("POST /infer 200 ")
    assert (record["level"], record["service"], record["route"], record["status"]) == (
        "INFO",
        "triton-gateway",
        "/infer",
        200,
    )
    assert (record["model"], record["version"]) == ("densenet_onnx", "1")
    assert record["duration_ms"] >= record["triton_ms"] > 0
    assert (record["bytes_in"], record["bytes_out"]) == (len(body), len(response.content))
    # Under uvicorn there is no API Gateway: the id is the gateway's own.
    assert len(record["request_id"]) == 32 and "api_request_id" not in record


def test_an_unknown_path_counts_as_4xx_under_one_route(gateway):
    response, [doc], [record] = request_lines(gateway, lambda c: c.get("/no/such/path"))
    assert response.status_code == 404
    assert (doc["status_class"], doc["route"]) == ("4xx", "unmatched")
    assert metric(doc, "Requests")[1:] == (
        [1],
        [["service"], ["service", "status_class"], ["service", "route", "status_class"]],
    )
    assert record["status"] == 404 and record["path"] == "/no/such/path"


def test_an_unknown_model_is_a_4xx_not_a_triton_error(gateway):
    response, [doc], [record] = request_lines(gateway, lambda c: c.get("/v2/models/no_such_model/versions/3"))
    assert response.status_code == 404
    assert (doc["status_class"], doc["route"]) == ("4xx", "/v2/models/{model}/versions/{version}")
    assert aggregate(doc, "TritonUnavailable") == [0] and aggregate(doc, "TritonUpstreamError") == [0]
    assert record["triton_calls"] >= 1 and "triton_errors" not in record


def test_a_slow_model_past_the_deadline_counts_triton_deadline(gateway):
    response, [doc], [record] = request_lines(gateway, lambda c: c.post("/infer", json=slow(3000)))
    assert response.status_code == 504
    assert doc["status_class"] == "5xx"
    assert aggregate(doc, "TritonDeadline") == [1]
    assert aggregate(doc, "TritonUnavailable") == [0]
    assert "TritonLatency" not in doc  # a call that did not answer has no latency to report
    assert record["triton_errors"] == ["deadline"]


def test_a_stopped_triton_counts_triton_unavailable(triton_factory):
    server: TritonServer = triton_factory(models=["densenet_onnx"])
    env = {"TRITON_GRPC_URL": server.grpc_url, "IDLE_RECONNECT_SECONDS": "0"}
    with gateway_process(env) as gateway:
        ok, [doc], _ = request_lines(gateway, lambda c: c.post("/infer", json=DENSENET))
        assert ok.status_code == 200 and aggregate(doc, "TritonUnavailable") == [0]

        server.stop()
        response, [doc], [record] = request_lines(gateway, lambda c: c.post("/infer", json=DENSENET))
        assert response.status_code == 503
        assert aggregate(doc, "TritonUnavailable") == [1]
        assert aggregate(doc, "TritonDeadline") == [0]
        assert doc["status_class"] == "5xx"
        assert record["triton_errors"] == ["unavailable"]


def test_tritons_log_lines_carry_the_access_records_request_id(triton_factory):
    # GIVEN a Triton that logs verbosely, which names each inference request's id
    server: TritonServer = triton_factory(models=["densenet_onnx"], extra_args=["--log-verbose=1"])
    with gateway_process({"TRITON_GRPC_URL": server.grpc_url}) as gateway:
        # WHEN an inference goes through the gateway (the caller's own v2 id comes back to the caller)
        body = {**DENSENET, "id": "callers-own-id"}
        response, _, [record] = request_lines(gateway, lambda c: c.post("/infer", json=body))
        v2 = dict(DENSENET, id="v2-callers-id")
        v2_response, _, [v2_record] = request_lines(
            gateway, lambda c: c.post("/v2/models/densenet_onnx/infer", json=v2)
        )
    assert response.status_code == 200 and v2_response.status_code == 200
    assert v2_response.json()["id"] == "v2-callers-id"
    # THEN Triton's log has lines tagged with the id of the gateway's access record
    log = server.log_path.read_text(errors="replace")
    for request_id in (record["request_id"], v2_record["request_id"]):
        assert f"[request id: {request_id}]" in log
    assert "[request id: callers-own-id]" not in log


QUEUED_MODEL_CONFIG = """\
name: "queued_model"
backend: "python"
max_batch_size: 1
input [ { name: "DELAY_MS" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "ECHO" data_type: TYPE_INT32 dims: [ 1 ] } ]
# One instance and room for one waiting request: Triton sheds the rest ("Exceeds maximum queue size").
dynamic_batching { default_queue_policy { max_queue_size: 1 } }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


@pytest.fixture
def queued_triton(model_repository, triton_log_dir, tmp_path) -> Iterator[TritonServer]:
    """A Triton serving only ``queued_model``: the slow model behind a queue of one."""
    repository = tmp_path / "repository"
    (repository / "queued_model" / "1").mkdir(parents=True)
    (repository / "queued_model" / "config.pbtxt").write_text(QUEUED_MODEL_CONFIG)
    code = (model_repository / "slow_model" / "1" / "model.py").read_bytes()
    (repository / "queued_model" / "1" / "model.py").write_bytes(code)
    with TritonServer(repository, log_dir=triton_log_dir, log_name="queued_model") as server:
        yield server


def test_requests_triton_sheds_count_triton_rejected(queued_triton):
    # GIVEN a model that runs one request at a time and queues one more
    body = {"inputs": [{"name": "DELAY_MS", "datatype": "INT32", "shape": [1, 1], "data": [1500]}]}
    env = {"TRITON_GRPC_URL": queued_triton.grpc_url, "TRITON_TIMEOUT_SECONDS": "8"}
    with gateway_process(env) as gateway, httpx.Client(base_url=gateway.url, timeout=30) as client:
        mark = gateway.mark()
        # WHEN four arrive at once
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda _: client.post("/v2/models/queued_model/infer", json=body), range(4))
            )
        text = gateway.wait_for(lambda out: len(access_records(out)) >= 4, since=mark)
    # THEN the ones Triton shed are 503s counted as TritonRejected, not as Triton being down
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(200) >= 1 and 503 in statuses, statuses
    shed = [a for a in answers if a.status_code == 503]
    assert all("overloaded" in a.json()["error"] for a in shed)
    docs = emf_documents(text)
    assert len(docs) == 4
    rejected = [doc for doc in docs if aggregate(doc, "TritonRejected") == [1]]
    assert len(rejected) == len(shed)
    assert all(aggregate(doc, "TritonUnavailable") == [0] for doc in docs)
    assert {doc["status_class"] for doc in rejected} == {"5xx"}


def test_metrics_can_be_switched_off_and_the_record_stays(triton):
    env = {"TRITON_GRPC_URL": triton.grpc_url, "POWERTOOLS_METRICS_DISABLED": "true"}
    with gateway_process(env) as gateway:
        response, docs, [record] = request_lines(gateway, lambda c: c.get("/health"))
    assert response.status_code == 200
    assert docs == [] and record["status"] == 200 and record["route"] == "/health"


def test_a_traced_request_under_uvicorn_sends_a_subsegment_per_triton_call(triton: TritonServer):
    # GIVEN a gateway under uvicorn (no Lambda) with a stand-in X-Ray daemon, and a caller whose load
    # balancer or API Gateway stage traces it: a sampled X-Amzn-Trace-Id header
    root, parent = "1-6753c3a1-0f1e2d3c4b5a69788796a5b4", "53995c3f42cd8ad8"
    with (
        xray_daemon() as daemon,
        gateway_process(
            {"TRITON_GRPC_URL": triton.grpc_url, "AWS_XRAY_DAEMON_ADDRESS": daemon.address}
        ) as gateway,
    ):
        header = {"x-amzn-trace-id": f"Root={root};Parent={parent};Sampled=1"}
        response, _, [record] = request_lines(
            gateway, lambda c: c.post("/infer", json=DENSENET, headers=header)
        )
        segments = daemon.segments(want=record["triton_calls"] + 1)
        # AND an unsampled request sends nothing
        request_lines(
            gateway,
            lambda c: c.post("/infer", json=DENSENET, headers={"x-amzn-trace-id": f"Root={root};Sampled=0"}),
        )
        assert len(daemon.segments(want=len(segments) + 1, timeout=1.0)) == len(segments)
    assert response.status_code == 200
    # THEN the gateway's subsegment hangs from the caller's segment, and each Triton call from it
    [top] = [s for s in segments if s["name"] == "gateway"]
    assert (top["trace_id"], top["parent_id"]) == (root, parent)
    calls = [s for s in segments if s["name"].startswith("Triton ")]
    assert len(calls) == record["triton_calls"] >= 1
    [infer] = [s for s in calls if s["name"] == "Triton ModelInfer"]
    assert (infer["parent_id"], infer["annotations"]["model"], infer["annotations"]["outcome"]) == (
        top["id"],
        "densenet_onnx",
        "ok",
    )
