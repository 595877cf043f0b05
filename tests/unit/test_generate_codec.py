"""Triton's generate extension decoded against a model's metadata (shapes, batching, datatypes,
parameters) and its answers encoded, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import BadRequest
from service.protocol.generate import decode_generate, encode_generate, sse_event
from service.protocol.metadata import ModelInfo, ModelMetadata, TensorMetadata
from service.protocol.tensors import Tensor


def info(
    inputs: list[tuple[str, str, list[int]]], max_batch_size: int = 0, optional: set[str] | None = None
) -> ModelInfo:
    metadata = ModelMetadata(
        name="m", inputs=[TensorMetadata(name=n, datatype=d, shape=s) for n, d, s in inputs], outputs=[]
    )
    return ModelInfo(
        metadata=metadata, max_batch_size=max_batch_size, optional_inputs=frozenset(optional or ())
    )


# TensorRT-LLM's ensemble as deployed: a batching model whose inputs are [-1, 1] (batch, one value).
TRTLLM = info(
    [("text_input", "BYTES", [-1, 1]), ("max_tokens", "INT32", [-1, 1]), ("stop_words", "BYTES", [-1, -1])],
    max_batch_size=64,
    optional={"stop_words"},
)


def test_a_batching_model_gets_a_batch_of_one():
    request = decode_generate({"text_input": "hi", "max_tokens": 5, "stop_words": ["a", "b"]}, TRTLLM)
    shapes = {t.name: (t.shape, t.array.dtype) for t in request.inputs}
    assert shapes == {
        "text_input": ([1, 1], np.dtype(object)),
        "max_tokens": ([1, 1], np.dtype("<i4")),
        "stop_words": ([1, 2], np.dtype(object)),
    }
    assert request.inputs[0].array[0, 0] == b"hi"


def test_free_dimensions_take_the_element_count_and_fixed_ones_must_match():
    model = info([("x", "FP32", [2, -1]), ("y", "INT64", [3])])
    request = decode_generate({"x": [1, 2, 3, 4], "y": [1, 2, 3]}, model)
    assert [t.shape for t in request.inputs] == [[2, 2], [3]]
    with pytest.raises(BadRequest, match="x: 3 element"):
        decode_generate({"x": [1, 2, 3], "y": [1, 2, 3]}, model)
    with pytest.raises(BadRequest, match="y: 2 element"):
        decode_generate({"x": [1, 2], "y": [1, 2]}, model)


def test_other_keys_are_parameters_of_v2_types():
    request = decode_generate({"text_input": "a", "max_tokens": 1, "p": 1.5, "q": "s", "r": True}, TRTLLM)
    assert request.parameters == {"p": 1.5, "q": "s", "r": True}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"text_input": "a", "max_tokens": 2**31}, "max_tokens"),
        ({"text_input": "a", "max_tokens": -(2**31) - 1}, "max_tokens"),
        ({"text_input": b"a".decode(), "max_tokens": 1.0}, "max_tokens"),
        ({"text_input": ["a", "b"], "max_tokens": 1}, "text_input"),
        ({"max_tokens": 1}, "text_input"),
        ({"text_input": "a", "max_tokens": 1, "p": None}, "p"),
        ({"text_input": "a", "max_tokens": 1, "p": 2**64 - 1}, "p"),
    ],
)
def test_refusals_name_the_key(fields, named):
    with pytest.raises(BadRequest) as refused:
        decode_generate(fields, TRTLLM)
    assert refused.value.message.startswith(f"{named}:")


def test_answers_are_flat_objects_and_events():
    outputs = [
        Tensor("text_output", "BYTES", np.array([b"caf\xc3\xa9"], dtype=object)),
        Tensor("ids", "INT32", np.array([[1, 2]], dtype=np.int32)),
    ]
    answer = encode_generate("m", "1", outputs)
    assert answer == {"model_name": "m", "model_version": "1", "text_output": "café", "ids": [1, 2]}
    assert sse_event(answer).startswith(b"data: {") and sse_event(answer).endswith(b"}\n\n")
