"""One request must not take Triton down for everyone: Triton 2.51 crashes when asked to classify a BYTES
output, so the gateway refuses that request itself (found while writing the v2 examples)."""

from __future__ import annotations

import httpx

from service.settings import Settings
from tests.gateway import serve_gateway

TEXT = {"name": "TEXT", "datatype": "BYTES", "shape": [1], "data": ["a"]}


def test_classifying_a_bytes_output_is_400_and_triton_lives_on(triton_factory):
    # GIVEN a gateway in front of a Triton of its own (were the guard to fail, only this one dies)
    server = triton_factory(models=["text_bytes"])
    with (
        serve_gateway(Settings(triton_grpc_url=server.grpc_url)) as url,
        httpx.Client(base_url=url) as client,
    ):
        # WHEN a caller asks for the classes of the BYTES output
        body = {"inputs": [TEXT], "outputs": [{"name": "UPPER", "parameters": {"classification": 1}}]}
        refused = client.post("/v2/models/text_bytes/infer", json=body)
        # THEN the gateway refuses it, naming the field, and Triton still serves
        assert refused.status_code == 400
        assert refused.json() == {
            "error": "outputs[0].parameters.classification: output 'UPPER' is BYTES; only numeric outputs "
            "can be classified"
        }
        assert server.is_running()
        numeric = {"inputs": [TEXT], "outputs": [{"name": "LENGTHS", "parameters": {"classification": 1}}]}
        answer = client.post("/v2/models/text_bytes/infer", json=numeric)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == ["1:0"]
