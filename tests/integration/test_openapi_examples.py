"""Every example in the OpenAPI document runs: each request example (and each GET with the path
parameters' examples) answers 200 with the recorded answer the document shows, and each error example is
what the gateway answers when that error is provoked with the real thing."""

from __future__ import annotations

import base64
import math
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from localdev.model_repo import MODEL_NAMES
from localdev.record_examples import ExampleCall, example_calls
from localdev.tritonserver import TritonServer, free_port
from service.app import create_app
from service.settings import Settings
from tests.gateway import serve_gateway

DOCUMENT = create_app(Settings()).openapi()
CALLS = list(example_calls(DOCUMENT))
# Statistics count every call and carry timestamps: their answers are compared by shape, not value.
VOLATILE = ("/stats",)
# Error examples that a healthy local Triton cannot be made to give: a Triton that fails a model's run
# (502) or says it is not live or ready (it says so only while starting or stopping).
NOT_PROVOKED = {("upstream", ""), ("not_live", ""), ("not_ready", "GET /v2/health/ready")}


def _close(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            _close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5), f"{where}: {got} != {want}"
    else:
        assert got == want, where


@pytest.mark.parametrize("call", CALLS, ids=[f"{c.operation} {c.name}" for c in CALLS])
def test_every_example_answers_what_the_document_shows(client: httpx.Client, call: ExampleCall):
    response = client.request(call.method, call.path, json=call.body)
    assert response.status_code == 200, response.text
    responses = DOCUMENT["paths"][call.operation.split(" ", 1)[1]][call.method.lower()]["responses"]
    documented = responses["200"].get("content", {}).get("application/json", {}).get("examples", {})
    if not documented:
        assert response.content == b""  # the v2 health answers
        assert "content-type" not in response.headers
        return
    want = documented[call.name]["value"]
    if call.operation.endswith(VOLATILE):
        assert set(response.json()) == set(want)
    else:
        _close(response.json(), want)


def _example_keys(node: Any, where: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("example", "examples"):
                yield f"{where}.{key}"
            else:
                yield from _example_keys(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _example_keys(value, f"{where}[{i}]")


def test_examples_live_only_where_these_tests_send_them():
    # Schemas carry none (they would be shown, and sent by schemathesis, without being checked here); every
    # operation-level one is a request body, a path parameter or an answer, all sent above or below.
    assert list(_example_keys(DOCUMENT.get("components", {}))) == []
    where = set()
    for operations in DOCUMENT["paths"].values():
        for operation in operations.values():
            for key in _example_keys(operation):
                where.add(re.sub(r"\[\d+\]", "[]", re.sub(r"\.(responses)\.\d+\.", r".\1.N.", key)))
    assert where <= {
        ".parameters[].example",
        ".requestBody.content.application/json.examples",
        ".responses.N.content.application/json.examples",
    }, where


def test_the_default_infer_example_is_a_small_real_jpeg_with_top_k():
    examples = DOCUMENT["paths"]["/infer"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    default = next(iter(examples.values()))["value"]
    jpeg = base64.b64decode(default["image"])
    assert jpeg.startswith(b"\xff\xd8") and 200 < len(jpeg) < 1000
    assert default["top_k"] >= 1


# -- error examples ------------------------------------------------------------------------------------


def _error_examples() -> Iterator[tuple[str, str, int, str, dict[str, Any]]]:
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    examples = response.get("content", {}).get("application/json", {}).get("examples", {})
                    for name, example in examples.items():
                        yield method, path, int(status), name, example["value"]


ERRORS = list(_error_examples())


@pytest.fixture(scope="module")
def gateways(triton: TritonServer) -> Iterator[dict[str, httpx.Client]]:
    """Gateways for each kind of fault: the allow-list, a Triton that is down, one that never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        variants = {
            "allow_list": Settings(triton_grpc_url=triton.grpc_url, allowed_models=",".join(MODEL_NAMES)),
            "plain": Settings(triton_grpc_url=triton.grpc_url),
            "down": Settings(triton_grpc_url=f"127.0.0.1:{free_port()}", idle_reconnect_seconds=0),
            "silent": Settings(
                triton_grpc_url=f"127.0.0.1:{silent.getsockname()[1]}",
                triton_timeout_seconds=0.5,
                health_timeout_seconds=0.5,
            ),
        }
        with (
            serve_gateway(variants["allow_list"]) as allow_list,
            serve_gateway(variants["plain"]) as plain,
            serve_gateway(variants["down"]) as down,
            serve_gateway(variants["silent"]) as silent_url,
        ):
            urls = {"allow_list": allow_list, "plain": plain, "down": down, "silent": silent_url}
            clients = {name: httpx.Client(base_url=url, timeout=30) for name, url in urls.items()}
            yield clients
            for http in clients.values():
                http.close()


def _default_call(method: str, path: str) -> ExampleCall:
    key = f"{method.upper()} {path}"
    return next(call for call in CALLS if call.operation == key)


def _provoke(gateways: dict[str, httpx.Client], method: str, path: str, name: str) -> httpx.Response:
    call = _default_call(method, path)
    body, headers, target, gateway = call.body, {}, call.path, "plain"
    if name == "not_served":
        gateway, target = "allow_list", call.path.replace(f"/{_model(call)}", "/resnet50", 1)
        if path == "/infer":
            body = {**body, "model": "resnet50"}
    elif name == "unavailable":
        gateway = "down"
    elif name == "deadline":
        gateway = "silent"
    elif name == "too_large":
        return gateways["plain"].request(call.method, target, content=b" " * 10485761)
    elif name == "shape":
        body = {"inputs": [{"name": "data_0", "datatype": "FP32", "shape": [1, 3, 224, 224], "b64": "AAAA"}]}
    elif name == "not_an_image":
        body = {"image": "aGVsbG8="}
    elif name == "media_type":
        return gateways["plain"].post(target, content=b"a,b", headers={"content-type": "text/csv"})
    elif name == "not_ready":
        target = target.replace("/versions/1/", "/versions/7/").replace(
            "densenet_onnx/ready", "resnet50/ready"
        )
    elif name == "version":
        target = target.replace("/versions/1", "/versions/abc")
    elif name == "datatype":
        body = {"inputs": [{"name": "TEXT", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}
    elif name == "encoding":
        headers = {"content-encoding": "br"}
    else:
        raise AssertionError(f"no way to provoke the {name!r} example of {method.upper()} {path}")
    return gateways[gateway].request(call.method, target, json=body, headers=headers)


def _model(call: ExampleCall) -> str:
    return call.path.split("/")[3] if call.path.startswith("/v2/models/") else "densenet_onnx"


@pytest.mark.parametrize(
    ("method", "path", "status", "name", "value"),
    ERRORS,
    ids=[f"{m.upper()} {p} {s} {n}" for m, p, s, n, _ in ERRORS],
)
def test_every_error_example_is_what_the_gateway_says(gateways, method, path, status, name, value):
    if {(name, ""), (name, f"{method.upper()} {path}")} & NOT_PROVOKED:
        pytest.skip("a healthy local Triton cannot be made to give this answer")
    response = _provoke(gateways, method, path, name)
    assert response.status_code == status, response.text
    got = response.json()
    if name == "deadline":
        # The example shows the default TRITON_TIMEOUT_SECONDS; this gateway's is 0.5 s.
        value = {"error": value["error"].replace("10.0 s", "0.5 s")}
    if status >= 500 and "error" in got:
        # A 5xx ends with the request's own id; the example shows one of API Gateway's.
        got = {"error": re.sub(r"\(request id \w+\)$", "(request id <id>)", got["error"])}
        value = {"error": re.sub(r"\(request id [\w-]+\)$", "(request id <id>)", value["error"])}
    assert got == value
