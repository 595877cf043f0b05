"""The JSON tensor reader's memory bound: the outline of a body, counted without parsing (against counts from
json.loads), and big bodies the reader never materialises."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from service.errors import BadRequest, PayloadTooLarge
from service.protocol.json_tensors import read_json_tensors
from service.protocol.json_tensors.outline import (
    MAX_STRUCTURE_VALUES,
    PRESCAN_BYTES,
    check_against_model,
    count_values,
    fast_read_bound,
    guard,
)
from service.protocol.metadata import ModelInfo, ModelMetadata, TensorMetadata
from service.protocol.schemas import TensorInferRequest

INFO = ModelInfo(
    metadata=ModelMetadata(
        name="densenet_onnx",
        inputs=[TensorMetadata(name="data_0", datatype="FP32", shape=[3, 224, 224])],
        outputs=[TensorMetadata(name="fc6_1", datatype="FP32", shape=[1000])],
    )
)
LIMIT = 1 << 20


def leaves(value) -> int:
    return sum(leaves(v) for v in value) if isinstance(value, list) else 1


def random_value(rng: random.Random, depth: int = 0):
    pick = rng.random()
    if depth < 3 and pick < 0.3:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(1, 4))]
    if pick < 0.6:
        return "".join(rng.choice('ab,"\\[]{} é') for _ in range(rng.randint(0, 6)))
    return rng.choice([0, -1.5e3, True, None, 12345678901234567890])


@pytest.mark.parametrize("seed", range(40))
def test_count_values_agrees_with_json_loads(seed):
    rng = random.Random(seed)
    value = [random_value(rng) for _ in range(rng.randint(1, 30))]
    assert count_values(json.dumps(value).encode()) == leaves(value)
    assert count_values(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()) == leaves(
        value
    )


def body(shape, data, **extra) -> bytes:
    tensor = {"name": "data_0", "datatype": "FP32", "shape": shape, "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def test_a_body_that_fits_passes_with_its_counts():
    data = [[[0.123456789] * 224] * 224] * 3
    found = guard(body([3, 224, 224], data), LIMIT)
    assert found is not None and found.inputs[0].elements == 150_528
    check_against_model(found, INFO)


def test_bytes_strings_full_of_commas_and_quotes_are_counted_as_strings():
    strings = ['a, "quoted", b\\c,' * 3] * 40_000
    raw = json.dumps({"inputs": [{"name": "t", "datatype": "BYTES", "shape": [40_000], "data": strings}]})
    assert len(raw) > PRESCAN_BYTES
    found = guard(raw.encode(), LIMIT)
    assert found is not None and found.inputs[0].elements == 40_000


def test_small_bodies_are_left_to_pydantic():
    assert guard(body([2], [1, 2, 3]), LIMIT) is None


def test_more_data_than_the_shape_is_refused_before_parsing():
    bomb = (
        b'{"inputs":[{"name":"data_0","datatype":"FP32","shape":[3,224,224],"data":['
        + b"0," * 999_999
        + b"0]}]}"
    )
    with pytest.raises(
        BadRequest, match=r"^inputs\[0\]\.data: shape \[3, 224, 224\] needs 150528 elements, got 1000000$"
    ):
        guard(bomb, LIMIT)


def test_more_elements_than_the_limit_is_413():
    data = b"[" + b"0," * (LIMIT) + b"0]"
    raw = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[%d],"data":' % (LIMIT + 1) + data + b"}]}"
    with pytest.raises(PayloadTooLarge, match="at most 1048576 are taken per request"):
        guard(raw, LIMIT)


def test_values_outside_the_data_are_bounded():
    junk = [0] * (MAX_STRUCTURE_VALUES + 10)
    raw = body([1], [0.5], parameters={"junk": junk}) + b" " * PRESCAN_BYTES
    with pytest.raises(
        BadRequest, match=r"^body: 655\d\d JSON values outside the inputs' data; at most 65536$"
    ):
        guard(raw, LIMIT)


def test_big_data_under_a_malformed_outline_is_not_read():
    raw = body("3x224x224", [0] * 600_000)
    with pytest.raises(BadRequest, match=r"^inputs\[0\]: name, datatype and shape must be valid"):
        guard(raw, LIMIT)


def test_the_model_refuses_the_declared_shape_before_parsing():
    found = guard(body([2, 3, 224, 224], [0.25] * 301_056), LIMIT)
    with pytest.raises(BadRequest, match=r"^inputs\[0\]\.shape: input 'data_0' takes \[3, 224, 224\]"):
        check_against_model(found, INFO)


def test_invalid_json_is_400_without_parsing():
    with pytest.raises(BadRequest, match=r"^Invalid JSON: Input data was truncated$"):
        guard(b'{"inputs": [{"name": "data_0", "data": [' + b"0," * PRESCAN_BYTES, LIMIT)


def containers(value) -> int:
    return 1 + sum(containers(v) for v in value) if isinstance(value, list) else 0


@pytest.mark.parametrize("seed", range(20))
def test_the_fast_read_bound_is_never_below_the_values_a_big_body_holds(seed):
    # GIVEN big bodies of random values (strings full of commas and brackets, nested lists, empty ones)
    rng = random.Random(seed)
    value = [random_value(rng) for _ in range(rng.randint(1, 30))]
    raw = json.dumps(value, separators=(",", ":")).encode() + b" " * PRESCAN_BYTES
    bound = fast_read_bound(raw, LIMIT)
    # THEN the bound counted without parsing holds every value, arrays included
    assert bound is not None and bound.values >= leaves(value) + containers(value)
    assert bound.outside == MAX_STRUCTURE_VALUES


def test_a_big_body_past_the_elements_it_may_hold_gets_no_fast_read():
    head = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":['
    raw = head + b"0," * (LIMIT + 70_000) + b"0]}]}"
    assert fast_read_bound(raw, LIMIT) is None
    assert fast_read_bound(raw, 2 * LIMIT) is not None


def test_a_big_body_that_fits_is_read_once_by_the_fast_path():
    data = [[[0.123456789] * 224] * 224] * 3
    raw = body([3, 224, 224], data)
    assert len(raw) > PRESCAN_BYTES
    found = read_json_tensors(raw, TensorInferRequest, LIMIT).fast
    assert found is not None and found.numbers[0].flat.size == 150_528


@pytest.mark.parametrize(
    "raw",
    [
        # more data than the shape holds: the guard's words, not the codec's
        body([3, 224, 224], [0.123456789] * 150_529),
        # more elements than the limit
        body([LIMIT + 1], [0.5] * (LIMIT + 1)),
    ],
    ids=["count", "limit"],
)
def test_a_big_body_the_guard_refuses_is_refused_in_its_words(raw):
    with pytest.raises((BadRequest, PayloadTooLarge)) as read:
        read_json_tensors(raw, TensorInferRequest, LIMIT)
    with pytest.raises((BadRequest, PayloadTooLarge)) as guarded:
        guard(raw, LIMIT)
    assert read.value.message == guarded.value.message


def test_values_outside_the_data_are_not_made_python_objects_by_the_fast_path():
    # GIVEN a big body whose data is one number, and 600,000 floats of junk beside it
    junk = b"[" + b"0.5," * 600_000 + b"0.5]"
    head = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1]}],"parameters":{"j":'
    raw = head + junk + b"}}"
    tracemalloc.start()
    try:
        with pytest.raises(BadRequest, match=r"^body: 6000\d\d JSON values outside the inputs' data"):
            read_json_tensors(raw, TensorInferRequest, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN the reader refuses it without building the junk (600,000 floats in a list: ~19 MB): what it holds
    # is the outline's byte masks, a few bytes per byte of the body
    assert peak < 4 * len(raw), f"{peak} bytes traced for a body of {len(raw)}"


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "precise"])
def test_a_16_mb_bomb_is_refused_within_a_few_megabytes(fast):
    # GIVEN a 16 MB body of zeros for a model that takes 150,528 elements
    head = b'{"inputs":[{"name":"data_0","datatype":"FP32","shape":[3,224,224],"data":['
    bomb = head + b"0," * (8 << 20) + b"0]}]}"
    tracemalloc.start()
    try:
        with pytest.raises((BadRequest, PayloadTooLarge)):
            read_json_tensors(bomb, TensorInferRequest, LIMIT, fast=fast).tensors(INFO)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN the reader holds a few bytes per byte of the body, not pydantic's ~77 per element
    assert peak < 4 * len(bomb), f"{peak} bytes traced for a body of {len(bomb)}"
