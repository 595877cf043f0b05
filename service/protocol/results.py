"""Triton's answer encoded as v2 JSON: the envelope (model, version, id) and each output as JSON elements or
base64 raw bytes. ``binary`` (v2 binary sections) and ``classification`` (image answers) reuse these."""

from __future__ import annotations

from typing import Any

import pybase64

from service.protocol.codecs import to_json_data, to_raw_bytes
from service.protocol.tensors import Array, InferResult, Tensor


def encode_result(result: InferResult, b64_outputs: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The v2 JSON answer for a result; outputs named in ``b64_outputs`` carry base64 raw bytes."""
    outputs = []
    for tensor in result.outputs:
        if tensor.name in b64_outputs:
            entry = tensor_header(tensor)
            entry["b64"] = pybase64.b64encode(to_raw_bytes(tensor.array, tensor.datatype)).decode()
        else:
            entry = json_output(tensor.name, tensor.datatype, tensor.array)
        outputs.append(entry)
    return result_body(result, outputs)


def json_output(name: str, datatype: str, array: Array) -> dict[str, Any]:
    """One output with its elements as JSON ``data`` (an image's slice of a batched output, say)."""
    return {
        "name": name,
        "datatype": datatype,
        "shape": list(array.shape),
        "data": to_json_data(array, datatype, name),
    }


def tensor_header(tensor: Tensor) -> dict[str, Any]:
    """An output's name, datatype and shape, to which its encoding adds the elements."""
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}


def result_body(result: InferResult, entries: list[dict[str, Any]], key: str = "outputs") -> dict[str, Any]:
    """The v2 answer around encoded ``entries``: model, version and (when the request had one) id, then the
    entries under ``key`` (``outputs``; ``results`` for the per-image answer)."""
    body: dict[str, Any] = {"model_name": result.model_name, "model_version": result.model_version}
    if result.id:
        body["id"] = result.id
    body[key] = entries
    return body
