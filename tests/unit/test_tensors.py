"""The tensor codecs and the checks against model metadata, with no server."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from service.errors import BadRequest
from service.protocol.checks import check_inputs, check_outputs
from service.protocol.codecs import (
    decode_input,
    deserialize_bytes,
    from_json_data,
    from_raw_bytes,
    serialize_bytes,
    to_raw_bytes,
)
from service.protocol.metadata import ModelInfo, ModelMetadata, TensorMetadata
from service.protocol.results import encode_result
from service.protocol.schemas import TensorIn
from service.protocol.tensors import InferResult, Tensor, datatype_of

rng = np.random.default_rng(7)

INFO = ModelInfo(
    metadata=ModelMetadata(
        name="m",
        inputs=[
            TensorMetadata(name="x", datatype="FP32", shape=[-1, 3]),
            TensorMetadata(name="k", datatype="INT32", shape=[1]),
        ],
        outputs=[TensorMetadata(name="y", datatype="FP32", shape=[-1])],
    ),
    optional_inputs=frozenset({"k"}),
)


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        ("FP32", np.float32),
        ("FP16", np.float16),
        ("FP64", np.float64),
        ("INT64", np.int64),
        ("UINT8", np.uint8),
    ],
)
def test_b64_round_trip_is_the_raw_little_endian_bytes(datatype, dtype):
    want = (rng.random((2, 3)) * 100).astype(dtype)
    tensor = TensorIn(
        name="x", datatype=datatype, shape=[2, 3], b64=base64.b64encode(want.tobytes()).decode()
    )
    got = decode_input(tensor, "inputs[0]").array
    np.testing.assert_array_equal(got, want)
    assert to_raw_bytes(got, datatype) == want.astype(dtype).newbyteorder("<").tobytes()


def test_flat_and_nested_json_give_the_same_array():
    want = rng.random((2, 3)).astype(np.float32)
    flat = from_json_data(want.ravel().tolist(), "FP32", [2, 3], "d")
    nested = from_json_data(want.tolist(), "FP32", [2, 3], "d")
    np.testing.assert_array_equal(flat, want)
    np.testing.assert_array_equal(nested, want)


def test_bool_and_int_json():
    np.testing.assert_array_equal(from_json_data([True, False], "BOOL", [2], "d"), [True, False])
    np.testing.assert_array_equal(from_json_data([1, -2], "INT8", [2], "d"), np.array([1, -2], np.int8))


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "message"),
    [
        ([1.0, 2.0], "FP32", [3], "shape [3] needs 3 elements, got 2"),
        ([[1.0, 2.0], [3.0]], "FP32", [3], "ragged"),
        ([[1.0, 2.0], [3.0, 4.0]], "FP32", [4, 1], "nested data has shape [2, 2]"),
        (["a"], "FP32", [1], "FP32 takes numbers, got strings"),
        ([1.5], "INT32", [1], "INT32 takes integers"),
        ([-1], "UINT8", [1], "values must fit UINT8"),
        ([1], "BOOL", [1], "BOOL takes booleans"),
        ([1, "a"], "BYTES", [2], "BYTES takes strings"),
    ],
)
def test_bad_json_data_names_the_field(data, datatype, shape, message):
    with pytest.raises(BadRequest, match=r"^inputs\[0\]\.data: ") as caught:
        from_json_data(data, datatype, shape, "inputs[0].data")
    assert message in caught.value.message


def test_raw_bytes_of_the_wrong_size_are_refused():
    with pytest.raises(BadRequest, match=r"needs 24 bytes \(6 x 4\), got 20"):
        from_raw_bytes(b"\0" * 20, "FP32", [2, 3], "inputs[0].b64")


def test_invalid_base64_is_refused():
    with pytest.raises(BadRequest, match=r"inputs\[0\].b64: not valid base64"):
        decode_input(TensorIn(name="x", datatype="FP32", shape=[1], b64="@@@@"), "inputs[0]")


def test_bytes_framing_round_trip_and_truncation():
    items = np.array([b"hello", b"", "wörld".encode()], dtype=np.object_)
    raw = serialize_bytes(items)
    assert raw[:4] == (5).to_bytes(4, "little")
    assert list(deserialize_bytes(raw, 3, "f")) == list(items)
    with pytest.raises(BadRequest, match="truncated"):
        deserialize_bytes(raw[:-1], 3, "f")
    with pytest.raises(BadRequest, match="left over"):
        deserialize_bytes(raw + b"x", 3, "f")


def test_checks_against_metadata():
    good = Tensor("x", "FP32", np.zeros((5, 3), np.float32))
    check_inputs([good], INFO)  # k is optional, -1 is free
    cases = [
        (
            [Tensor("z", "FP32", np.zeros((1, 3), np.float32))],
            r"inputs\[0\].name: model 'm' has no input 'z'",
        ),
        ([Tensor("x", "FP64", np.zeros((1, 3)))], r"inputs\[0\].datatype: input 'x' is FP32, got FP64"),
        (
            [Tensor("x", "FP32", np.zeros((1, 4), np.float32))],
            r"inputs\[0\].shape: input 'x' takes \[-1, 3\]",
        ),
        ([good, good], r"inputs\[1\].name: input 'x' is given twice"),
        ([Tensor("k", "INT32", np.zeros(1, np.int32))], r"inputs: missing input 'x' \(FP32 \[-1, 3\]\)"),
    ]
    for tensors, message in cases:
        with pytest.raises(BadRequest, match=message):
            check_inputs(tensors, INFO)
    with pytest.raises(BadRequest, match=r"outputs\[0\].name: model 'm' has no output 'q'; it has 'y'"):
        check_outputs(["q"], INFO)


def test_encode_result_json_and_b64():
    y = np.arange(4, dtype=np.float32).reshape(2, 2)
    text = np.array([b"a", b"b"], dtype=np.object_)
    result = InferResult("m", "1", "", [Tensor("y", "FP32", y), Tensor("t", "BYTES", text)])
    body = encode_result(result, frozenset({"y"}))
    assert body["outputs"][0] == {
        "name": "y",
        "datatype": "FP32",
        "shape": [2, 2],
        "b64": base64.b64encode(y.tobytes()).decode(),
    }
    assert body["outputs"][1]["data"] == ["a", "b"]
    assert "id" not in body


def test_non_utf8_bytes_output_asks_for_b64():
    result = InferResult("m", "1", "", [Tensor("t", "BYTES", np.array([b"\xff"], dtype=np.object_))])
    with pytest.raises(BadRequest, match="not UTF-8"):
        encode_result(result)
    assert (
        encode_result(result, frozenset({"t"}))["outputs"][0]["b64"]
        == base64.b64encode(b"\1\0\0\0\xff").decode()
    )


def test_datatype_of():
    assert datatype_of(np.zeros(1, np.float32)) == "FP32"
    assert datatype_of(np.zeros(1, ">i4")) == "INT32"
    assert datatype_of(np.array(["a"])) == "BYTES"
