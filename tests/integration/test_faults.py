"""Faults made with the real thing: a stopped Triton, one that never answers, a slow model, the allow-list."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.bodies import DENSENET, slow
from tests.gateway import serve_gateway
from tests.settle import settled


@pytest.fixture
def silent_triton() -> Iterator[str]:
    """host:port of a socket that takes connections and never says a word, like a hung Triton."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def timed(call):
    began = time.monotonic()
    response = call()
    return response, time.monotonic() - began


def test_stopped_triton_gives_503_then_recovers_after_restart(triton_factory):
    # GIVEN a gateway in front of its own Triton, with every UNAVAILABLE retried on a fresh channel, and
    # deadlines long enough that "quickly" (a refused connection: milliseconds) cannot be a spent deadline
    server: TritonServer = triton_factory(models=["densenet_onnx"])
    # (no /health cache: this test is about the outage, test_health_docs about the cache)
    settings = Settings(
        triton_grpc_url=server.grpc_url,
        idle_reconnect_seconds=0,
        health_timeout_seconds=10,
        triton_timeout_seconds=10,
        health_cache_seconds=0,
    )
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").json()["status"] == "healthy"
        assert client.post("/infer", json=DENSENET).status_code == 200

        # WHEN Triton stops
        server.stop()
        health, health_seconds = timed(lambda: client.get("/health"))
        infer, infer_seconds = timed(lambda: client.post("/infer", json=DENSENET))

        # THEN both answer 503 quickly, without Triton's address
        assert health.status_code == 503
        assert health.json()["triton"] == "unavailable"
        assert health_seconds < 5
        assert infer.status_code == 503
        assert re.fullmatch(
            r"Triton is unavailable; try again shortly \(request id \w+\)", infer.json()["error"]
        )
        assert infer.headers["retry-after"] == "1"
        assert infer_seconds < 5
        assert "127.0.0.1" not in health.text + infer.text

        # WHEN Triton is back on the same port THEN the next call succeeds (a fresh channel, no back-off)
        server.restart()
        assert client.post("/infer", json=DENSENET).status_code == 200
        assert client.get("/health").status_code == 200


def test_hung_triton_health_answers_within_its_deadline_and_infer_gets_504(silent_triton):
    # A hung Triton would hold the request until the client's 30 s: the bounds are each deadline plus
    # room for two busy cores.
    settings = Settings(triton_grpc_url=silent_triton, triton_timeout_seconds=1.5, health_timeout_seconds=1.0)
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        health, health_seconds = timed(lambda: client.get("/health"))
        assert health.status_code == 503
        assert health.json()["triton"] == "timeout"
        assert health_seconds < 4

        infer, infer_seconds = timed(lambda: client.post("/infer", json=DENSENET))
        assert infer.status_code == 504
        assert re.fullmatch(
            r"Triton did not answer within the 1.5 s deadline \(request id \w+\)", infer.json()["error"]
        )
        assert infer_seconds < 4.5
        assert silent_triton.split(":")[1] not in infer.text + health.text


def test_slow_model_past_the_deadline_gets_504(triton):
    settings = Settings(triton_grpc_url=triton.grpc_url, triton_timeout_seconds=0.5)
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/infer", json=slow(10)).status_code == 200
        response, seconds = timed(lambda: client.post("/infer", json=slow(4000)))
        assert response.status_code == 504
        assert re.fullmatch(
            r"Triton did not answer within the 0\.5 s deadline \(request id \w+\)", response.json()["error"]
        )
        assert seconds < 3  # not the model's 4 s


def test_allow_list_hides_other_models(triton):
    settings = Settings(triton_grpc_url=triton.grpc_url, allowed_models=("densenet_onnx",))
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/infer", json=DENSENET).status_code == 200
        response = client.post("/infer", json=slow(0))
        assert response.status_code == 404
        assert response.json() == {"error": "model 'slow_model' is not served here"}


def test_default_model_setting(triton):
    settings = Settings(triton_grpc_url=triton.grpc_url, default_model="slow_model")
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        body = {"inputs": [{"name": "DELAY_MS", "datatype": "INT32", "shape": [1], "data": [3]}]}
        answer = client.post("/infer", json=body).json()
        assert answer["model_name"] == "slow_model"
        assert answer["outputs"][0]["data"] == [3]


def test_a_client_that_disconnects_mid_body_is_logged_once_as_499(gateway_url, caplog):
    # GIVEN a client that promises a 1 MB body, sends 100 bytes of it and hangs up
    caplog.set_level(logging.INFO)
    host, port = gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n" + b"[" * 100
        )
        time.sleep(0.2)

    # THEN one access record says 499, one line says what happened, and no traceback anywhere
    def access() -> list[int]:
        return [r.status for r in caplog.records if r.name == "service.access" and "/infer" in r.getMessage()]

    assert settled(access, [499]) == [499]
    closed = [r for r in caplog.records if "client closed the connection" in r.getMessage()]
    assert len(closed) == 1
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
