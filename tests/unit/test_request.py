"""The canonical request: every wire format decodes into one InferenceRequest, whose body is read only once
its model is known, and whose answer says how each output goes back."""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest

from service.errors import BadRequest
from service.protocol.infer_json import decode_infer_json
from service.protocol.metadata import ModelInfo, ModelMetadata, TensorMetadata
from service.protocol.request import Answer, InferenceRequest, Limits, ModelRef, OutputAsk
from service.protocol.tensors import OutputSpec
from service.protocol.v2_http import decode_v2

INFO = ModelInfo(
    metadata=ModelMetadata(
        name="m",
        inputs=[
            TensorMetadata(name="a", datatype="FP32", shape=[2, 3]),
            TensorMetadata(name="b", datatype="INT32", shape=[-1]),
        ],
        outputs=[
            TensorMetadata(name="y", datatype="FP32", shape=[2]),
            TensorMetadata(name="z", datatype="FP32", shape=[1]),
        ],
    )
)
LIMITS = Limits(element_limit=1 << 20, max_inflated_bytes=1 << 24, max_images=4)
A = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
B = np.array([3, -1, 4], dtype=np.int32)
INPUTS = [
    {"name": "a", "datatype": "FP32", "shape": [2, 3], "data": A.tolist()},
    {"name": "b", "datatype": "INT32", "shape": [3], "b64": base64.b64encode(B.tobytes()).decode()},
]


def arrays(request: InferenceRequest) -> list[tuple[str, np.ndarray]]:
    return [(t.name, t.array) for t in request.tensors(INFO).decode()]


@pytest.mark.parametrize("gzipped", [False, True])
def test_infer_and_v2_bodies_make_the_same_request(gzipped):
    # GIVEN the same tensors as an /infer body (model inside) and a v2 body (model in the path)
    infer = decode_infer_json(json.dumps({"model": "m", "version": "2", "inputs": INPUTS}).encode(), LIMITS)
    v2_body = json.dumps({"inputs": INPUTS}).encode()
    v2 = decode_v2(
        gzip.compress(v2_body) if gzipped else v2_body,
        ModelRef("m", "2"),
        LIMITS,
        None,
        "gzip" if gzipped else None,
    )
    # THEN both name the same model and read to the same tensors and the same outputs
    assert isinstance(infer, InferenceRequest)
    assert infer.model == v2.model == ModelRef("m", "2")
    for (name, got), (want_name, want) in zip(arrays(infer), arrays(v2), strict=True):
        assert name == want_name and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert (
        infer.tensors(INFO).answer.specs(INFO)
        == v2.tensors(INFO).answer.specs(INFO)
        == [OutputSpec("y"), OutputSpec("z")]
    )


@pytest.mark.parametrize(
    "decode",
    [
        lambda: decode_v2(b"not json", ModelRef("m"), LIMITS),
        lambda: decode_v2(b"not gzip", ModelRef("m"), LIMITS, None, "gzip"),
        lambda: decode_v2(b'{"inputs": []}', ModelRef("m"), LIMITS, "999"),
        lambda: decode_infer_json(b'{"model": "m", "inputs": [{"name": "a"}]}', LIMITS),
        lambda: decode_infer_json(b'{"model": "m", "inputs": "x", "image": "y"}', LIMITS),
    ],
    ids=["v2-json", "v2-gzip", "v2-header-length", "infer-tensor", "infer-mixed"],
)
def test_a_body_is_judged_only_once_its_model_is_known(decode):
    # GIVEN a body that is wrong in itself: decoding names the model and judges nothing yet
    request = decode()
    assert request.model.name == "m"
    # THEN reading it against the model refuses it, naming what is wrong
    with pytest.raises(BadRequest):
        request.tensors(INFO)


def test_the_answer_travels_with_the_request():
    # /infer: b64 where asked; v2: binary where asked, classification counts kept
    infer = decode_infer_json(
        json.dumps({"inputs": INPUTS, "outputs": [{"name": "z", "b64": True}, {"name": "y"}]}).encode(),
        LIMITS,
    )
    assert isinstance(infer, InferenceRequest)
    infer.tensors(INFO)
    assert infer.answer == Answer((OutputAsk("z", "b64"), OutputAsk("y", "json")))
    assert infer.answer.named("b64", ["y", "z"]) == {"z"}
    v2 = decode_v2(
        json.dumps({"inputs": INPUTS, "parameters": {"binary_data_output": True}}).encode(),
        ModelRef("m"),
        LIMITS,
    )
    v2.tensors(INFO)
    assert v2.answer == Answer(None, "binary")
    assert v2.answer.named("binary", ["y", "z"]) == {"y", "z"}


def test_outputs_the_model_lacks_are_refused_naming_them():
    request = decode_v2(
        json.dumps({"inputs": INPUTS, "outputs": [{"name": "q"}]}).encode(), ModelRef("m"), LIMITS
    )
    with pytest.raises(BadRequest, match=r"^outputs\[0\]\.name: model 'm' has no output 'q'"):
        request.tensors(INFO).answer.specs(INFO)
