"""The v2 binary framing and Content-Encoding, checked against tritonclient.http's own encoder and decoder."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest
import tritonclient.http as httpclient

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.protocol.binary import (
    answer_of,
    decode_inputs,
    encode_response,
    forwarded_parameters,
    inflate,
    split_body,
)
from service.protocol.metadata import ModelInfo, ModelMetadata, TensorMetadata
from service.protocol.request import Answer, OutputAsk
from service.protocol.schemas import V2InferRequest
from service.protocol.tensors import InferResult, OutputSpec, Tensor

INFO = ModelInfo(
    metadata=ModelMetadata(
        name="m",
        inputs=[TensorMetadata(name="X", datatype="FP32", shape=[-1, 3])],
        outputs=[
            TensorMetadata(name="Y", datatype="FP32", shape=[-1, 3]),
            TensorMetadata(name="Z", datatype="BYTES", shape=[-1]),
        ],
    )
)


def client_body(inputs, outputs=None, **kwargs):
    """The body and header length tritonclient.http sends for these inputs."""
    return httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kwargs)


def fp32_input(x, binary=True):
    tensor = httpclient.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def decode(body, header_length):
    header, binary = split_body(body, None if header_length is None else str(header_length))
    request = V2InferRequest.model_validate_json(header)
    return request, decode_inputs(request.inputs, binary)


# -- requests ---------------------------------------------------------------------------------------------


def test_tritonclient_binary_request_decodes_to_the_same_arrays():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    text = np.array([b"ab", b"", "é".encode()], dtype=object)
    words = httpclient.InferInput("W", [3], "BYTES")
    words.set_data_from_numpy(text)
    body, header_length = client_body([fp32_input(x), words])
    assert header_length is not None
    _, [got_x, got_words] = decode(body, header_length)
    np.testing.assert_array_equal(got_x.array, x)
    assert list(got_words.array) == list(text)


def test_json_and_binary_inputs_mix_in_one_request():
    x = np.ones((1, 3), np.float32)
    y = np.full((1, 3), 2.0, np.float32)
    json_input = httpclient.InferInput("J", [1, 3], "FP32")
    json_input.set_data_from_numpy(y, binary_data=False)
    body, header_length = client_body([json_input, fp32_input(x)])
    _, [got_json, got_binary] = decode(body, header_length)
    np.testing.assert_array_equal(got_json.array, y)
    np.testing.assert_array_equal(got_binary.array, x)


def test_a_json_only_body_needs_no_header_length():
    x = np.ones((1, 3), np.float32)
    body, header_length = client_body([fp32_input(x, binary=False)])
    assert header_length is None
    _, [tensor] = decode(body, None)
    np.testing.assert_array_equal(tensor.array, x)


@pytest.mark.parametrize(
    ("header_length", "message"),
    [("0", "not within"), ("99999", "not within"), ("-3", "not within"), ("ten", "expected a number")],
)
def test_header_length_outside_the_body_is_refused(header_length, message):
    with pytest.raises(BadRequest, match=message):
        split_body(b'{"inputs": []}', header_length)


def test_binary_data_size_past_the_body_is_refused():
    body, header_length = client_body([fp32_input(np.ones((1, 3), np.float32))])
    with pytest.raises(BadRequest, match=r"inputs\[0\]\.parameters\.binary_data_size: 12 bytes .* past"):
        decode(body[:-4], header_length)


def test_binary_bytes_left_over_are_refused():
    body, header_length = client_body([fp32_input(np.ones((1, 3), np.float32))])
    with pytest.raises(BadRequest, match="4 bytes after the JSON header belong to no input"):
        decode(body + b"\0\0\0\0", header_length)


def test_binary_data_size_that_disagrees_with_the_shape_is_refused():
    header = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 8}}]
    }
    raw = json.dumps(header).encode()
    with pytest.raises(BadRequest, match=r"needs 12 bytes .* got 8"):
        decode(raw + bytes(8), len(raw))


def test_binary_input_without_the_header_length_says_so():
    header = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]
    }
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length header set"):
        decode(json.dumps(header).encode(), None)


@pytest.mark.parametrize("size", [-1, True, "12", 1.5])
def test_binary_data_size_must_be_a_count(size):
    header = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": size}}]
    }
    raw = json.dumps(header).encode()
    with pytest.raises(BadRequest, match="expected a non-negative integer"):
        decode(raw + bytes(4), len(raw))


def test_truncated_bytes_element_is_refused():
    words = httpclient.InferInput("W", [1], "BYTES")
    words.set_data_from_numpy(np.array([b"hello"], dtype=object))
    body, header_length = client_body([words])
    # GIVEN a body whose declared size covers a shortened element: the size matches, the framing does not
    header = json.loads(body[:header_length])
    header["inputs"][0]["parameters"]["binary_data_size"] = 7
    raw = json.dumps(header).encode()
    with pytest.raises(BadRequest, match="truncated"):
        decode(raw + body[header_length : header_length + 7], len(raw))


# -- Content-Encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("GZIP", gzip.compress), (None, lambda b: b)],
)
def test_inflate_undoes_what_tritonclient_does(encoding, compress):
    data = b'{"inputs": []}' * 100
    assert inflate(compress(data), encoding, 1 << 20) == data


def test_bad_gzip_is_a_bad_request():
    with pytest.raises(BadRequest, match="not valid gzip"):
        inflate(b"not gzip at all", "gzip", 1 << 20)


def test_truncated_gzip_is_a_bad_request():
    with pytest.raises(BadRequest, match="truncated"):
        inflate(gzip.compress(b"x" * 1000)[:-8], "gzip", 1 << 20)


def test_unknown_encoding_is_unsupported():
    with pytest.raises(UnsupportedMediaType, match="br"):
        inflate(b"...", "br", 1 << 20)


def test_a_zip_bomb_stops_at_the_limit():
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(bytes(10_000_000)), "gzip", 1_000_000)


# -- outputs ---------------------------------------------------------------------------------------------


def wanted_outputs(request: V2InferRequest, info: ModelInfo) -> tuple[list[OutputSpec], frozenset[str]]:
    """The outputs a request asks Triton for, and which of them its answer carries as binary sections."""
    answer = answer_of(request)
    specs = answer.specs(info)
    return specs, answer.named("binary", [spec.name for spec in specs])


def binary_answer(names: frozenset[str]) -> Answer:
    return Answer(tuple(OutputAsk(n, "binary" if n in names else "json") for n in ("Y", "Z")))


def test_tritonclient_requested_outputs_are_binary_by_default_and_carry_class_count():
    body, _ = client_body(
        [fp32_input(np.ones((1, 3), np.float32), binary=False)],
        outputs=[
            httpclient.InferRequestedOutput("Y", class_count=2),
            httpclient.InferRequestedOutput("Z", False),
        ],
    )
    specs, binary = wanted_outputs(V2InferRequest.model_validate_json(body), INFO)
    assert specs == [OutputSpec("Y", 2), OutputSpec("Z", 0)]
    assert binary == {"Y"}


def test_no_outputs_named_means_all_of_them_binary_when_binary_data_output():
    body, _ = client_body([fp32_input(np.ones((1, 3), np.float32), binary=False)])
    request = V2InferRequest.model_validate_json(body)
    assert request.parameters == {"binary_data_output": True}
    specs, binary = wanted_outputs(request, INFO)
    assert [s.name for s in specs] == ["Y", "Z"]
    assert binary == {"Y", "Z"}
    assert forwarded_parameters(request) == {}


def test_request_parameters_other_than_binary_data_output_are_forwarded():
    body, _ = client_body(
        [fp32_input(np.ones((1, 3), np.float32), binary=False)], priority=2, parameters={"k": "v"}
    )
    request = V2InferRequest.model_validate_json(body)
    assert request.parameters == {"priority": 2, "k": "v", "binary_data_output": True}
    assert forwarded_parameters(request) == {"priority": 2, "k": "v"}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"classification": "2"}, "classification: expected a non-negative integer"),
        ({"binary_data": 1}, "binary_data: expected true or false"),
    ],
)
def test_bad_output_parameters_are_refused(parameters, message):
    request = V2InferRequest.model_validate(
        {
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}],
            "outputs": [{"name": "Y", "parameters": parameters}],
        }
    )
    with pytest.raises(BadRequest, match=message):
        wanted_outputs(request, INFO)


def test_unknown_output_is_refused():
    request = V2InferRequest.model_validate(
        {
            "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}],
            "outputs": [{"name": "Q"}],
        }
    )
    with pytest.raises(BadRequest, match="has no output 'Q'"):
        wanted_outputs(request, INFO)


# -- responses -------------------------------------------------------------------------------------------

RESULT = InferResult(
    "m",
    "1",
    "req-7",
    [
        Tensor("Y", "FP32", np.arange(6, dtype=np.float32).reshape(2, 3)),
        Tensor("Z", "BYTES", np.array([b"one", b"", b"three"], dtype=object)),
    ],
)


@pytest.mark.parametrize("binary", [frozenset(), frozenset({"Y"}), frozenset({"Z"}), frozenset({"Y", "Z"})])
def test_tritonclient_reads_our_response(binary):
    body, header_length = encode_response(RESULT, binary_answer(binary))
    assert (header_length is None) == (not binary)
    result = httpclient.InferenceServerClient.parse_response_body(body, header_length=header_length)
    assert result.get_response()["id"] == "req-7"
    np.testing.assert_array_equal(result.as_numpy("Y").reshape(2, 3), RESULT.outputs[0].array)
    assert [bytes(v) if not isinstance(v, str) else v.encode() for v in result.as_numpy("Z")] == [
        b"one",
        b"",
        b"three",
    ]


def test_binary_sections_follow_the_header_in_output_order():
    body, header_length = encode_response(RESULT, binary_answer(frozenset({"Y", "Z"})))
    header = json.loads(body[:header_length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [24, 4 + 3 + 4 + 0 + 4 + 5]
    assert body[header_length : header_length + 24] == RESULT.outputs[0].array.tobytes()
    assert body[header_length + 24 :] == b"\x03\0\0\0one\0\0\0\0\x05\0\0\0three"
