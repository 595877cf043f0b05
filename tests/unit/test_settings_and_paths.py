"""Settings from the environment, the error envelope's field paths, and the stage prefix of Lambda events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.errors import describe_validation_errors
from service.protocol.schemas import TensorInferRequest
from service.root_path import stage_prefix
from service.settings import Settings

EVENTS = Path(__file__).parents[1] / "lambda" / "events"


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("TRITON_GRPC_URL", "triton.internal:8001")
    monkeypatch.setenv("ALLOWED_MODELS", "densenet_onnx, other ,")
    monkeypatch.setenv("API_ROOT_PATH", "v1/")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.triton_grpc_url == "triton.internal:8001"
    assert settings.allowed_models == ("densenet_onnx", "other")
    assert settings.api_root_path == "/v1"
    assert settings.log_level == "DEBUG"
    assert settings.model_allowed("other") and not settings.model_allowed("third")
    assert Settings(allowed_models=()).model_allowed("anything")


def test_a_timeout_past_api_gateways_limit_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_TIMEOUT_SECONDS", "30")
    with pytest.raises(ValidationError, match="triton_timeout_seconds"):
        Settings()


def test_validation_errors_name_the_field():
    with pytest.raises(ValidationError) as caught:
        TensorInferRequest.model_validate_json(
            b'{"inputs": [{"name": "x", "datatype": "FP33", "shape": [-1]}]}'
        )
    message = describe_validation_errors(caught.value.errors())
    assert "inputs[0].datatype: Input should be 'BOOL'" in message
    assert "inputs[0].shape[0]: Input should be greater than or equal to 0" in message


def test_the_old_chalice_body_gets_a_clear_answer():
    with pytest.raises(ValidationError) as caught:
        TensorInferRequest.model_validate_json(b'{"name": "Test inference"}')
    assert (
        describe_validation_errors(caught.value.errors())
        == "inputs: Field required; name: Extra inputs are not permitted"
    )


def test_stage_prefix_from_a_sam_event():
    event = json.loads((EVENTS / "docs.json").read_text())
    assert stage_prefix(event) == "/api"
    event["requestContext"]["path"] = "/docs"  # a custom domain: the stage is not in the URL
    assert stage_prefix(event) == ""
    assert stage_prefix(None) == ""
