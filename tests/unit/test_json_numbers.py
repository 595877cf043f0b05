"""The SIMD fast path for JSON tensors reads every body it accepts exactly as the precise path (pydantic,
then numpy) reads it — same arrays, same dtypes, same errors — and hands everything unusual back."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from service.errors import BadRequest
from service.protocol.binary import V2Tensors, fast_v2_tensors
from service.protocol.infer_body import fast_tensor_request, read_infer_body_keys, tensor_request
from service.protocol.json_numbers import mentions, mentions_data, parse_numeric_body
from service.protocol.schemas import V2InferRequest

rng = np.random.default_rng(3)
LIMIT = 1 << 20  # MAX_ELEMENTS' default


def body(data, datatype="FP32", shape=None, **extra) -> bytes:
    shape = shape if shape is not None else list(np.shape(data))
    return json.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}], **extra}
    ).encode()


def precise(raw: bytes):
    """What the precise path makes of the body: its tensors, or the message of the error it raises."""
    try:
        return [t.array for t in tensor_request(raw, read_infer_body_keys(raw)).decode()]
    except BadRequest as exc:
        return exc.message


def fast(raw: bytes):
    found = fast_tensor_request(raw, LIMIT)
    if found is None:
        return None
    _, request = found
    try:
        return [t.array for t in request.decode()]
    except BadRequest as exc:
        return exc.message


def assert_same(got, want) -> None:
    """Both the same error message, or the same tensors (dtype, shape, elements)."""
    if isinstance(want, str) or isinstance(got, str):
        assert got == want
        return
    assert len(got) == len(want)
    for mine, theirs in zip(got, want, strict=True):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        assert mine.tolist() == theirs.tolist()


ACCEPTED = [
    body(rng.random(150).tolist()),  # flat
    body(rng.random((2, 3, 4)).tolist()),  # nested to the shape
    body(rng.random(24).tolist(), shape=[2, 3, 4]),  # flat for a nested shape
    body([1, 2, 3], "FP16"),  # integers for a float type
    body([-5, 0, 7], "INT8"),
    body([[1, 2], [3, 4]], "UINT32"),
    body([2**62 + 1, 5], "UINT64"),
    body([2**62, -(2**62)], "INT64"),
    body([0.1, 1e-30, 3.4e38, -2.5], "FP64"),
    body([2**53 + 1, 3], "FP32"),  # integers float64 cannot hold exactly: numpy casts them from int64
    body([2**53 + 1, 3.5], "FP64"),
    body([1.0, 2.0], "FP32", model="densenet_onnx", version=2, outputs=[{"name": "y", "b64": True}]),
]
# Bodies the fast path reads, whose decode must fail with the precise path's message.
REFUSED_BY_CHECKS = [
    body([1, 2, 3], shape=[4]),  # wrong count
    body([[1, 2], [3, 4]], shape=[4]),  # nested, but not to the shape
    body([300, 1], "UINT8"),  # out of range
    body([-1, 1], "UINT16"),
]
# Bodies the fast path hands back, whole or the one input: the precise path reads (or refuses) them.
HANDED_BACK = [
    body([-(2**70), 1]),  # simdjson's BIGINT_ERROR, a RuntimeError
    body([1, -(2**64)], "INT64"),
    body([1, [2], 3, 4], "INT32", shape=[4]),  # an array hidden among the numbers
    body([[1, 2], [3, [4]]], "INT32", shape=[2, 2]),
    body([[1, 2], 3], shape=[2]),  # ragged
    body([[1, 2], [3]], shape=[3]),
    body([1.5, 2], "INT32"),  # floats for integers
    body([True, False], "BOOL"),
    body(["a", "b"], "BYTES"),
    body([], shape=[0]),
    body([2**63], "INT64"),  # past int64
    body([2**63 + 1, 5], "UINT64"),
    body([2**64, 1.5], "FP32"),
    b'{"inputs": [{"name": "x[0]", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}',  # '[' in a string
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2], "data": [3]}]}',
    b'{"inputs": [], "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
    b"[1, 2]",
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "image": "AAAA"}',
    b'{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}',  # invalid datatype
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [NaN]}]}',
    b'{"model": "", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "stray": 1}',
]


@pytest.mark.parametrize("raw", ACCEPTED + REFUSED_BY_CHECKS, ids=lambda raw: raw[:60].decode())
def test_fast_path_reads_a_body_as_the_precise_path_does(raw):
    found = fast_tensor_request(raw, LIMIT)
    assert found is not None and found[1].numbers, "the fast path should read this body's data as buffers"
    assert_same(fast(raw), precise(raw))


@pytest.mark.parametrize("raw", HANDED_BACK, ids=lambda raw: raw[:60].decode())
def test_fast_path_hands_back_what_it_cannot_read_exactly(raw):
    found = fast_tensor_request(raw, LIMIT)
    # THEN either the precise path reads the whole body, or the input's data stays a list it decodes
    assert found is None or not found[1].numbers
    if found is not None:
        assert_same(fast(raw), precise(raw))


def test_refused_bodies_are_refused_by_the_checks_not_handed_back():
    # GIVEN bodies whose only fault is one the codec's checks explain
    for raw in REFUSED_BY_CHECKS:
        # THEN the fast path reads them, and decoding answers the precise path's 400
        assert isinstance(fast(raw), str)


def test_the_numbers_arrive_as_one_buffer_without_python_floats():
    x = rng.random((3, 224, 224)).astype(np.float32)
    parsed = parse_numeric_body(body(x.tolist()))
    assert parsed is not None
    [numbers] = parsed.numbers.values()
    assert numbers.nesting == (3, 224, 224) and numbers.flat.dtype == np.float64
    assert parsed.fields["inputs"][0]["data"] == []
    np.testing.assert_array_equal(numbers.flat.astype(np.float32), x.ravel())


@pytest.mark.parametrize("raw", ACCEPTED + REFUSED_BY_CHECKS, ids=lambda raw: raw[:60].decode())
def test_v2_fast_path_reads_a_header_as_the_precise_path_does(raw):
    no_binary = memoryview(b"")
    found = fast_v2_tensors(raw, no_binary, LIMIT)
    assert found is not None
    precise_v2 = V2Tensors(V2InferRequest.model_validate_json(raw), no_binary)

    def decoded(tensors):
        try:
            return [t.array for t in tensors.decode()]
        except BadRequest as exc:
            return exc.message

    assert_same(decoded(found), decoded(precise_v2))


def test_a_base64_body_is_read_once_by_pydantic_as_the_precise_path_reads_it():
    x = rng.random((3, 4)).astype(np.float32)
    raw = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [3, 4],
                    "b64": base64.b64encode(x.tobytes()).decode(),
                }
            ]
        }
    ).encode()
    assert not mentions_data(raw)
    found = fast_tensor_request(raw, LIMIT)
    assert found is not None and not found[1].numbers
    assert_same(fast(raw), precise(raw))


@pytest.mark.parametrize(
    ("raw", "mentioned"),
    [(b'{"data": [1]}', True), (b'{"a": "data"}', True), (b'{"b64": "ZGF0YQ=="}', False), (b"[]", False)],
)
def test_mentions_data_finds_the_key_between_quotes(raw, mentioned):
    assert mentions_data(raw) is mentioned


@pytest.mark.parametrize(
    ("raw", "mentioned"),
    [
        (b'{"image": "' + base64.b64encode(b"\xff\xd8" * 1000) + b'", "top_k": 5}', False),
        (b'{"inputs": []}', True),
        (b'{"inputs_x": [], "data": "inputs"}', True),  # a string counts too: only the slower exact path
        (b'{"input": []}', False),
    ],
    ids=["image", "inputs", "in-a-string", "input"],
)
def test_an_image_body_is_not_tried_as_tensors(raw, mentioned):
    assert mentions(raw, b"inputs") is mentioned
    if not mentioned:
        assert fast_tensor_request(raw, LIMIT) is None
