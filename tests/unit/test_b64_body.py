"""The base64 fast path reads a body exactly as the precise path does, or hands it back (None) to be read
and explained by it."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from service.protocol.b64_body import fast_b64_request
from service.protocol.infer_body import read_infer_body_keys, tensor_request

RNG = np.random.default_rng(3)
BIG = RNG.random((3, 224, 224), dtype=np.float32)
SMALL = np.arange(4, dtype=np.int32)


def b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode()


def tensor(name: str, array: np.ndarray, datatype: str = "FP32", **extra: object) -> dict[str, object]:
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "b64": b64(array), **extra}


def precise(body: bytes):
    return tensor_request(body, read_infer_body_keys(body))


@pytest.mark.parametrize(
    "payload",
    [
        {"inputs": [tensor("data_0", BIG)]},
        # a short base64 input beside the long one, outputs, model, version, id, parameters
        {
            "model": "densenet_onnx",
            "version": "1",
            "id": "r-1",
            "inputs": [tensor("small", SMALL, "INT32"), tensor("data_0", BIG, parameters={"p": "b64"})],
            "outputs": [{"name": "fc6_1", "b64": True}],
        },
        # two long inputs, whitespace around the colon, keys in another order
        {
            "inputs": [
                {"b64": b64(BIG), "shape": [3, 224, 224], "datatype": "FP32", "name": "a"},
                tensor("b", BIG),
            ]
        },
    ],
)
@pytest.mark.parametrize("indent", [None, 2])
def test_reads_as_the_precise_path_does(payload, indent):
    body = json.dumps(payload, indent=indent).encode()
    fast = fast_b64_request(body)
    assert fast is not None
    keys, request = fast
    want = precise(body)
    assert (keys.model, keys.version, keys.kind) == (payload.get("model"), payload.get("version"), "tensors")
    assert request.request_id == want.request_id and request.b64_outputs == want.b64_outputs
    got, expected = request.decode(), want.decode()
    assert [(t.name, t.datatype) for t in got] == [(t.name, t.datatype) for t in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.array.dtype == b.array.dtype and a.array.shape == b.array.shape
        np.testing.assert_array_equal(a.array, b.array)


LONG = b64(BIG)


@pytest.mark.parametrize(
    "body",
    [
        # an escaped slash in the base64 (some encoders write "\/"): quotes cannot be trusted
        json.dumps({"inputs": [tensor("a", BIG)]}).replace("/", "\\/", 1).encode(),
        # a "b64" key inside parameters holding a long string: the placeholder is not an input's b64
        json.dumps({"inputs": [tensor("a", SMALL, "INT32", parameters={"b64": LONG})]}).encode(),
        # a duplicate "b64" key: which one counts is the parser's business
        b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [3, 224, 224], "b64": "'
        + LONG.encode()
        + b'", "b64": "'
        + LONG.encode()
        + b'"}]}',
        # not base64, no inputs at all, an image key beside
        json.dumps({"inputs": [{**tensor("a", BIG), "b64": "!" * 5000}]}).encode(),
        json.dumps({"image": LONG}).encode(),
        json.dumps({"inputs": [tensor("a", BIG)], "image": "x"}).encode(),
        # a big structure beside the base64 (the outline check's business)
        json.dumps({"inputs": [tensor("a", BIG)], "parameters": {"many": [1] * 40_000}}).encode(),
        # JSON data (the numbers' fast path), short strings only, truncated, many strings
        json.dumps({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}]}).encode(),
        json.dumps({"inputs": [tensor("a", SMALL, "INT32")]}).encode(),
        json.dumps({"inputs": [tensor("a", BIG)]}).encode()[:-50],
        json.dumps(
            {"inputs": [tensor("a", BIG)], "id": "x", "outputs": [{"name": str(i)} for i in range(300)]}
        ).encode(),
    ],
)
def test_hands_back_what_it_does_not_read_exactly(body):
    assert fast_b64_request(body) is None


def test_a_wrong_size_is_explained_by_the_same_words():
    # GIVEN base64 of 4 bytes too few for the shape: accepted by both readers, refused when decoded
    body = json.dumps({"inputs": [{**tensor("a", BIG), "b64": b64(BIG.ravel()[:-1])}]}).encode()
    fast = fast_b64_request(body)
    assert fast is not None
    with pytest.raises(Exception) as fast_error:
        fast[1].decode()
    with pytest.raises(Exception) as precise_error:
        precise(body).decode()
    assert str(fast_error.value) == str(precise_error.value)
    assert "inputs[0].b64: shape [3, 224, 224] of FP32 needs 602112 bytes" in str(fast_error.value)
