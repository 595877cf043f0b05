"""A ModelInferRequest serialized with its tensors appended (each copied once) is the message protobuf itself
builds: the same fields, the same tensors in the same order, whatever their sizes and buffer types."""

from __future__ import annotations

import numpy as np
import pytest

from service.protocol.codecs import raw_buffer
from service.triton.infer_request import serialize_infer_request
from service.triton.protos import service_pb2


def header() -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="densenet_onnx", model_version="2", id="req-1")
    request.parameters["priority"].int64_param = 3
    for name in ("a", "b", "c"):
        entry = request.inputs.add(name=name, datatype="UINT8")
        entry.shape.append(1)
    request.outputs.add(name="out").parameters["classification"].int64_param = 5
    return request


@pytest.mark.parametrize(
    "sizes",
    [
        [0],  # an empty tensor still takes its place in the order
        [1, 127, 128],  # around the first varint boundary
        [16_383, 16_384, 602_112],  # two- and three-byte lengths; densenet's 1x3x224x224 FP32
        [2_097_152],  # a four-byte length
    ],
)
def test_same_message_as_protobuf_builds(sizes):
    rng = np.random.default_rng(len(sizes))
    tensors = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes]
    # GIVEN the buffers as the gateway holds them: bytes, a view into a larger body, a numpy array's memory
    body = b"header" + b"".join(tensors)
    views, offset = [], len(b"header")
    for tensor in tensors:
        views.append(memoryview(body)[offset : offset + len(tensor)])
        offset += len(tensor)
    arrays = [raw_buffer(np.frombuffer(t, dtype=np.uint8), "UINT8") for t in tensors]
    want = header()
    want.raw_input_contents.extend(tensors)
    for buffers in (tensors, views, arrays):
        # WHEN it is serialized with the tensors appended
        wire = serialize_infer_request(header(), buffers)
        # THEN protobuf reads back the message it would have built itself, tensors in order
        got = service_pb2.ModelInferRequest.FromString(wire)
        assert got == want
        assert list(got.raw_input_contents) == tensors


def test_raw_buffer_copies_only_what_is_not_already_the_wire_form():
    array = np.arange(12, dtype="<f4").reshape(3, 4)
    # A C-contiguous array of the datatype's dtype is handed over as a view of its own memory ...
    view = raw_buffer(array, "FP32")
    assert isinstance(view, memoryview) and bytes(view) == array.tobytes()
    # ... a transposed (non-contiguous) or wrongly typed one as new little-endian bytes.
    assert raw_buffer(array.T, "FP32") == np.ascontiguousarray(array.T).tobytes()
    assert raw_buffer(array.astype(">f4"), "FP32") == array.tobytes()
    strings = np.array([b"ab", b""], dtype=np.object_)
    assert raw_buffer(strings, "BYTES") == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
