"""What an answer may say: a 5xx carries a fixed message per kind and the request id, never Triton's own
text (backend exceptions, file paths, addresses), which goes to the log; a 504 says where the time went."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway

# A backend that fails the way real ones do: an exception naming a file and an internal address.
FAILING_MODEL = """
class TritonPythonModel:
    def execute(self, requests):
        raise RuntimeError("cannot open /opt/models/secret/weights.bin from 10.1.2.3:9000")
"""
FAILING_CONFIG = """
name: "failing_model"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
FREE_CONFIG = FAILING_CONFIG.replace("failing_model", "free_shape").replace(
    "dims: [ 1 ] } ]\noutput", "dims: [ -1 ] } ]\noutput"
)
ECHO_MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        echo = [pb_utils.get_input_tensor_by_name(r, "X").as_numpy() for r in requests]
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("Y", x)]) for x in echo]
"""
X = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1.0]}]}


@pytest.fixture(scope="module")
def failing_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repository = tmp_path_factory.mktemp("failing_repository")
    for name, config, code in [
        ("failing_model", FAILING_CONFIG, FAILING_MODEL),
        ("free_shape", FREE_CONFIG, ECHO_MODEL),
    ]:
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(config)
        (repository / name / "1" / "model.py").write_text(code)
    with TritonServer(repository, log_dir=tmp_path_factory.mktemp("failing_logs")) as server:
        yield server


@pytest.fixture(scope="module")
def failing_gateway(failing_triton: TritonServer) -> Iterator[str]:
    with serve_gateway(
        Settings(triton_grpc_url=failing_triton.grpc_url, default_model="failing_model")
    ) as url:
        yield url


def request_id_of(message: str) -> str:
    found = re.search(r"\(request id (\w+)\)$", message)
    assert found, message
    return found.group(1)


@pytest.mark.parametrize("route", ["/infer", "/v2/models/failing_model/infer"])
def test_a_failing_backend_answers_502_without_its_text(failing_gateway, failing_triton, caplog, route):
    caplog.set_level(logging.INFO)
    with httpx.Client(base_url=failing_gateway, timeout=30) as client:
        answer = client.post(route, json=X)
    assert answer.status_code == 502
    message = answer.json()["error"]
    assert re.fullmatch(r"Triton failed to run the request \(INTERNAL\) \(request id \w+\)", message)
    for secret in (
        "/opt/models",
        "weights.bin",
        "10.1.2.3",
        "RuntimeError",
        "model.py",
        str(failing_triton.grpc_port),
    ):
        assert secret not in answer.text
    # The log has what the answer leaves out, on the line with the answer's request id.
    [line] = [r.getMessage() for r in caplog.records if request_id_of(message) in r.getMessage()]
    assert "cannot open /opt/models/secret/weights.bin" in line


def test_triton_invalid_argument_passes_scrubbed(failing_gateway):
    # A priority Triton refuses (the gateway passes v2 parameters on unread): Triton's INVALID_ARGUMENT.
    body = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "data": [1.0]}],
        "parameters": {"priority": -1},
    }
    with httpx.Client(base_url=failing_gateway, timeout=30) as client:
        answer = client.post("/v2/models/free_shape/infer", json=body)
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert "priority" in message, message
    assert "request id" not in message
    assert not re.search(r"\d+\.\d+\.\d+\.\d+|/tmp/", message)


def big_png(side: int = 5000) -> bytes:
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[:, :, 0] = np.arange(side)[None, :] % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_a_deadline_spent_on_decoding_says_so(triton: TritonServer):
    # GIVEN a short deadline, and the model's metadata already cached by a first (small) request
    settings = Settings(triton_grpc_url=triton.grpc_url, triton_timeout_seconds=0.5)
    with serve_gateway(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.post("/infer", content=big_png(64), headers={"content-type": "image/png"})
        # WHEN large images take the deadline to decode and resize (~0.15 s each, all before any call)
        big = big_png()
        answer = client.post("/infer", files=[("images", (f"{i}.png", big, "image/png")) for i in range(12)])
    # THEN the 504 blames the deadline, not Triton
    assert answer.status_code == 504
    assert re.fullmatch(
        r"the request's deadline of 0\.5 s passed before Triton was called \(request id \w+\)",
        answer.json()["error"],
    )
