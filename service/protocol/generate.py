"""Triton's generate extension on the wire: a flat JSON object whose keys name the model's inputs (the rest
are request parameters) in, one flat JSON object per response out (each output by name, one element as a
scalar), and the SSE framing of ``generate_stream``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from service.errors import BadRequest
from service.protocol.metadata import ModelInfo
from service.protocol.tensors import NUMPY_DTYPES, Tensor

# Parameters the gateway sets on every generate request itself: a caller's value would change what the
# gateway reads back (the empty final response ends a decoupled stream).
RESERVED_PARAMETERS = frozenset({"triton_enable_empty_final_response"})
_INTEGER_RANGES = {
    name: (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    for name, dtype in NUMPY_DTYPES.items()
    if dtype.kind in "iu"
}


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A generate body decoded against its model: the input tensors and the request parameters."""

    inputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)


def parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"body must be a JSON object, got {type(value).__name__}")
    return value


def decode_generate(fields: Mapping[str, Any], info: ModelInfo) -> GenerateRequest:
    """Keys naming a model input become that tensor (shaped by the model's metadata); every other key is
    a request parameter (a boolean, an integer, a number or a string, as Triton's generate accepts)."""
    inputs: list[Tensor] = []
    parameters: dict[str, Any] = {}
    for key, value in fields.items():
        spec = info.input(key)
        if spec is not None:
            inputs.append(_tensor(key, spec.datatype, spec.shape, info.max_batch_size > 0, value))
            continue
        if key in RESERVED_PARAMETERS:
            raise BadRequest(f"{key}: set by the gateway, not by a request")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(f"{key}: a parameter must be finite")
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise BadRequest(f"{key}: a parameter must fit a 64-bit integer")
        if not isinstance(value, bool | int | float | str):
            raise BadRequest(
                f"{key}: not an input of model {info.metadata.name!r}, and a parameter must be a boolean, "
                f"an integer, a number or a string (got {_kind(value)})"
            )
        parameters[key] = value
    given = {tensor.name for tensor in inputs}
    missing = [
        t.name for t in info.metadata.inputs if t.name not in given and t.name not in info.optional_inputs
    ]
    if missing:
        raise BadRequest(f"{missing[0]}: required input of model {info.metadata.name!r} is missing")
    return GenerateRequest(inputs, parameters)


def _tensor(name: str, datatype: str, shape: Sequence[int], batched: bool, value: Any) -> Tensor:
    items = value if isinstance(value, list) else [value]
    dims = list(shape)
    if batched and dims:
        dims[0] = 1  # one request: a batch of one, as Triton's own generate does
    fixed = math.prod(d for d in dims if d >= 0)
    free = [i for i, d in enumerate(dims) if d < 0]
    if len(free) > 1 or (not free and fixed != len(items)) or (free and len(items) % max(fixed, 1)):
        raise BadRequest(f"{name}: {len(items)} element(s) do not fit the input's shape {list(shape)}")
    if free:
        dims[free[0]] = len(items) // max(fixed, 1)
    return Tensor(name, datatype, _array(name, datatype, items).reshape(dims))


def _array(name: str, datatype: str, items: list[Any]) -> np.ndarray[Any, Any]:
    if datatype not in NUMPY_DTYPES:
        raise BadRequest(f"{name}: datatype {datatype} cannot be written as JSON")
    if datatype == "BYTES":
        if not all(isinstance(item, str) for item in items):
            raise BadRequest(f"{name}: a BYTES input takes strings")
        return np.array([item.encode() for item in items], dtype=np.object_)
    if datatype == "BOOL":
        if not all(isinstance(item, bool) for item in items):
            raise BadRequest(f"{name}: a BOOL input takes true or false")
    elif datatype in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[datatype]
        if not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
            raise BadRequest(f"{name}: a {datatype} input takes integers")
        if not all(low <= item <= high for item in items):
            raise BadRequest(f"{name}: a value is out of {datatype}'s range [{low}, {high}]")
    elif not all(
        isinstance(item, int | float) and not isinstance(item, bool) and math.isfinite(item) for item in items
    ):
        raise BadRequest(f"{name}: a {datatype} input takes finite numbers")
    return np.array(items, dtype=NUMPY_DTYPES[datatype])


def _kind(value: Any) -> str:
    return {list: "an array", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def encode_generate(model_name: str, model_version: str, outputs: Sequence[Tensor]) -> dict[str, Any]:
    """One response as the generate extension writes it: each output by name, a one-element output as its
    scalar, BYTES as text."""
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    for tensor in outputs:
        values = [_plain(item) for item in tensor.array.reshape(-1).tolist()]
        answer[tensor.name] = values[0] if len(values) == 1 else values
    return answer


def _plain(item: Any) -> Any:
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    return item


def sse_event(data: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + orjson.dumps(data) + b"\n\n"
