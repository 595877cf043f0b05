"""/health and the OpenAPI document over real HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from openapi_spec_validator import validate

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway
from tests.settle import settled


def test_health_when_triton_is_ready(client: httpx.Client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "healthy",
        "triton": "ready",
        "default_model": "densenet_onnx",
        "default_model_ready": True,
    }


def test_docs_and_openapi(client: httpx.Client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text
    schema = client.get("/openapi.json").json()
    infer = schema["paths"]["/infer"]["post"]
    body_schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/InferRequest"}
    components = schema["components"]
    default = next(iter(infer["requestBody"]["content"]["application/json"]["examples"].values()))
    assert default["value"]["top_k"] >= 1
    assert "TensorIn" in components["schemas"]
    assert components["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "API Gateway API key (checked by API Gateway, not here)",
    }
    assert infer["security"] == [{"APIKeyHeader": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert set(infer["responses"]) >= {"200", "400", "404", "503", "504"}


def test_openapi_is_valid_and_promises_no_422(client: httpx.Client):
    schema = client.get("/openapi.json").json()
    validate(schema)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], f"{method.upper()} {path}"
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def triton_calls(server: TritonServer) -> int:
    """gRPC calls Triton has served, counted from its own verbose log (one "Done for <RPC>" line each)."""
    return server.log_path.read_text(errors="replace").count('"Done for ')


def test_a_flood_of_health_probes_costs_triton_one_call_a_second(triton_factory):
    # GIVEN a Triton that logs every gRPC call it serves, and a gateway in front of it
    server: TritonServer = triton_factory(models=["densenet_onnx"], extra_args=["--log-verbose=1"])
    with serve_gateway(Settings(triton_grpc_url=server.grpc_url)) as url:
        before = triton_calls(server)
        began = time.monotonic()

        # WHEN 8 callers ask /health 300 times in all, as fast as they can
        def probe(_: int) -> int:
            with httpx.Client(base_url=url, timeout=10) as http:
                return sum(http.get("/health").status_code == 200 for _ in range(300 // 8))

        with ThreadPoolExecutor(8) as pool:
            healthy = sum(pool.map(probe, range(8)))
        seconds = time.monotonic() - began

    # THEN every answer is healthy, and Triton served about one call per second of the flood, not 300
    assert healthy == 300 // 8 * 8
    calls = settled(lambda: triton_calls(server) - before, int(seconds) + 1, timeout=1.0)
    print(f"{healthy} probes in {seconds:.1f} s: {calls} Triton calls")
    assert 1 <= calls <= seconds / 1.0 + 2, (calls, seconds)


def test_health_sees_an_outage_within_its_cache_time(triton_factory):
    server: TritonServer = triton_factory(models=["densenet_onnx"])
    settings = Settings(triton_grpc_url=server.grpc_url, health_cache_seconds=0.5)
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/health").status_code == 200
        server.stop()
        time.sleep(0.6)
        answer = http.get("/health")
    assert answer.status_code == 503
    assert answer.json()["triton"] == "unavailable"
