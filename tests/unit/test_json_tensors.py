"""The one JSON tensor reader (``service.protocol.json_tensors``) at its boundary: whatever the fast paths
(base64 cut from the body, numbers as SIMD buffers) read, the precise path alone (``fast=False``: the
outline's guard, then pydantic, then numpy) reads the same -- same request, same arrays and dtypes -- or
refuses with the same message. Fixed bodies, random ones, and random mutations of both."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import numpy as np
import pytest

from service.errors import BadRequest, PayloadTooLarge
from service.protocol.json_tensors import read_json_tensors
from service.protocol.json_tensors.simd import mentions, mentions_data, parse_numeric_body
from service.protocol.schemas import TensorInferRequest, V2InferRequest

rng = np.random.default_rng(3)
LIMIT = 1 << 20  # MAX_ELEMENTS' default
SCHEMAS = [TensorInferRequest, V2InferRequest]
RNG = np.random.default_rng(3)
BIG = RNG.random((3, 224, 224), dtype=np.float32)
SMALL = np.arange(4, dtype=np.int32)


def body(data, datatype="FP32", shape=None, **extra) -> bytes:
    shape = shape if shape is not None else list(np.shape(data))
    return json.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}], **extra}
    ).encode()


def b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode()


def tensor(name: str, array: np.ndarray, datatype: str = "FP32", **extra: object) -> dict[str, object]:
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "b64": b64(array), **extra}


def outcome(raw: bytes, schema: Any, *, fast: bool) -> Any:
    """What the reader makes of a body: the request and its decoded arrays, or the refusal's message."""
    try:
        read = read_json_tensors(raw, schema, LIMIT, fast=fast).tensors(None)
        arrays = [read.decode_input(i, t, f"inputs[{i}]").array for i, t in enumerate(read.request.inputs)]
    except (BadRequest, PayloadTooLarge) as exc:
        return exc.message
    # The fast paths leave the data they read out of the request (``[]``, or a placeholder for b64).
    fields = read.request.model_dump(exclude={"inputs": {"__all__": {"data", "b64"}}})
    return fields, [(a.dtype.str, a.shape, a.tobytes() if a.dtype != object else a.tolist()) for a in arrays]


def assert_equivalent(raw: bytes) -> None:
    for schema in SCHEMAS:
        assert outcome(raw, schema, fast=True) == outcome(raw, schema, fast=False), (
            schema.__name__,
            raw[:200],
        )


def fast_read(raw: bytes, schema: Any = TensorInferRequest) -> Any:
    return read_json_tensors(raw, schema, LIMIT).fast


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


LONG = b64(BIG)


B64_HANDED_BACK = [
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
]


B64_ACCEPTED = [
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
]
ALL = ACCEPTED + REFUSED_BY_CHECKS + HANDED_BACK + B64_HANDED_BACK


@pytest.mark.parametrize("raw", ACCEPTED + REFUSED_BY_CHECKS, ids=lambda raw: raw[:60].decode())
@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_numbers_are_read_as_buffers_as_the_precise_path_reads_them(raw, schema):
    found = fast_read(raw, schema)
    assert found is not None and found.numbers, "the fast path should read this body's data as buffers"
    assert outcome(raw, schema, fast=True) == outcome(raw, schema, fast=False)


@pytest.mark.parametrize("payload", B64_ACCEPTED)
@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_base64_is_cut_from_the_body_as_the_precise_path_reads_it(payload, indent, schema):
    if schema is V2InferRequest:
        payload = {k: v for k, v in payload.items() if k not in ("model", "version")}
    raw = json.dumps(payload, indent=indent).encode()
    found = fast_read(raw, schema)
    assert found is not None and found.decoded, "the fast path should cut this body's base64"
    assert outcome(raw, schema, fast=True) == outcome(raw, schema, fast=False)


@pytest.mark.parametrize(
    "raw", HANDED_BACK + B64_HANDED_BACK, ids=lambda raw: raw[:60].decode(errors="replace")
)
def test_what_the_fast_paths_hand_back_reads_the_same(raw):
    assert_equivalent(raw)


def test_refused_bodies_are_refused_by_the_checks():
    # GIVEN bodies whose only fault is one the codec's checks explain
    for raw in REFUSED_BY_CHECKS:
        # THEN the fast path reads them, and decoding answers the precise path's 400
        assert isinstance(outcome(raw, TensorInferRequest, fast=True), str)


def test_a_wrong_base64_size_is_explained_by_the_same_words():
    raw = json.dumps({"inputs": [{**tensor("a", BIG), "b64": b64(BIG.ravel()[:-1])}]}).encode()
    assert fast_read(raw) is not None
    message = outcome(raw, TensorInferRequest, fast=True)
    assert message == outcome(raw, TensorInferRequest, fast=False)
    assert "inputs[0].b64: shape [3, 224, 224] of FP32 needs 602112 bytes" in message


def random_tensor(r: random.Random) -> dict[str, Any]:
    datatype = r.choice(
        ["FP32", "FP64", "INT8", "INT32", "INT64", "UINT8", "UINT64", "BOOL", "BYTES", "FP16"]
    )
    shape = [r.randint(1, 4) for _ in range(r.randint(1, 3))]
    count = int(np.prod(shape))
    pick = r.random()
    values: list[Any]
    if datatype == "BOOL":
        values = [r.random() < 0.5 for _ in range(count)]
    elif datatype == "BYTES":
        values = [r.choice(["a", "b,c", "[x]", ""]) for _ in range(count)]
    elif datatype.startswith("FP"):
        # (FP16 holds neither 2**60 nor 1e-300: numpy's cast warns, on both paths alike.)
        big = [2**60, 1e-300] if datatype != "FP16" else [6e4]
        values = [r.choice([r.uniform(-1e3, 1e3), r.randint(-9, 9), *big]) for _ in range(count)]
    else:
        values = [r.choice([0, 1, -1, 127, 255, 2**31, 2**62, -(2**63)]) for _ in range(count)]
    if pick < 0.25:
        entry: dict[str, Any] = {
            "b64": base64.b64encode(r.randbytes(r.choice([count, count * 4, 5000]))).decode()
        }
    elif pick < 0.5 and len(shape) > 1:
        entry = {"data": np.array(values, dtype=object).reshape(shape).tolist()}
    else:
        entry = {"data": values}
    if r.random() < 0.2:
        shape = [*shape[:-1], shape[-1] + 1]  # a shape the data does not fill
    return {"name": r.choice(["x", "y", "x[0]"]), "datatype": datatype, "shape": shape, **entry}


def random_body(r: random.Random) -> bytes:
    payload: dict[str, Any] = {"inputs": [random_tensor(r) for _ in range(r.randint(1, 3))]}
    if r.random() < 0.3:
        payload["outputs"] = [{"name": "y", "b64": r.random() < 0.5}]
    if r.random() < 0.3:
        payload["id"] = r.choice(["r", 7, None])
    if r.random() < 0.2:
        payload["parameters"] = {"b64": "x" * 5000, "n": [1, [2]]}
    if r.random() < 0.2:
        payload[r.choice(["model", "version", "image", "stray"])] = r.choice(["m", 1, "", None])
    return json.dumps(payload, indent=r.choice([None, 1])).encode()


def mutated(raw: bytes, r: random.Random) -> bytes:
    """One random edit: a byte dropped, doubled or replaced by a JSON token, or the body cut short."""
    at = r.randrange(len(raw))
    edit = r.randrange(4)
    if edit == 0:
        return raw[:at] + raw[at + 1 :]
    if edit == 1:
        return raw[:at] + raw[at : at + 1] * 2 + raw[at + 1 :]
    if edit == 2:
        return (
            raw[:at]
            + r.choice([b"[", b"]", b",", b'"', b"\\", b"1", b"-", b"e", b"{", b"null"])
            + raw[at + 1 :]
        )
    return raw[:at]


@pytest.mark.parametrize("seed", range(150))
def test_random_bodies_read_the_same_on_both_paths(seed):
    assert_equivalent(random_body(random.Random(seed)))


@pytest.mark.parametrize("seed", range(300))
def test_mutated_bodies_read_the_same_on_both_paths(seed):
    r = random.Random(seed)
    source = r.choice([*ALL, random_body(r)]) if seed % 2 else random_body(r)
    assert_equivalent(mutated(source, r))


def test_the_numbers_arrive_as_one_buffer_without_python_floats():
    x = rng.random((3, 224, 224)).astype(np.float32)
    parsed = parse_numeric_body(body(x.tolist()))
    assert parsed is not None
    [numbers] = parsed.numbers.values()
    assert numbers.nesting == (3, 224, 224) and numbers.flat.dtype == np.float64
    assert parsed.fields["inputs"][0]["data"] == []
    np.testing.assert_array_equal(numbers.flat.astype(np.float32), x.ravel())


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
        assert fast_read(raw) is None
