"""/health and the OpenAPI document over real HTTP."""

from __future__ import annotations

import httpx
from openapi_spec_validator import validate


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
