"""Tensors between the wire and numpy: JSON elements, raw little-endian bytes, BYTES framing, and the checks
of names, datatypes, shapes and element counts against a model's metadata."""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pybase64  # SIMD base64: 40x CPython's on a 600 kB tensor, the b64 fast path's main cost

from service.errors import BadRequest
from service.protocol.metadata import ModelInfo
from service.protocol.schemas import TensorIn

# v2 datatype -> numpy dtype, pinned little-endian: the v2 binary and gRPC raw forms are little-endian.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}
_DATATYPES_BY_KIND = {dtype.str: name for name, dtype in NUMPY_DTYPES.items() if name != "BYTES"}
# What JSON can give for each datatype family, as numpy's inferred kinds: bool, signed/unsigned ints, floats.
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor; BYTES tensors hold an object array of ``bytes``."""

    name: str
    datatype: str
    array: Array

    @property
    def shape(self) -> list[int]:
        """The tensor's dimensions."""
        return list(self.array.shape)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """An output to ask Triton for; ``class_count`` > 0 asks for its top-k classification instead."""

    name: str
    class_count: int = 0


def datatype_of(array: Array) -> str:
    """The v2 datatype of a numpy array (object and string arrays are BYTES)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    name = _DATATYPES_BY_KIND.get(array.dtype.newbyteorder("<").str)
    if name is None:
        raise BadRequest(f"numpy dtype {array.dtype} has no v2 datatype")
    return name


def element_count(shape: Sequence[int]) -> int:
    """How many elements a tensor of ``shape`` has."""
    return math.prod(shape)


def base64_bytes(text: str, field: str) -> bytes:
    """Strict base64 (no stray characters) decoded; 400 naming ``field`` when it is not."""
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{field}: not valid base64 ({exc})") from None


def decode_input(tensor: TensorIn, field: str) -> Tensor:
    """The numpy form of a JSON or base64 input; ``field`` names it in errors, e.g. ``inputs[0]``."""
    if tensor.b64 is not None:
        raw = base64_bytes(tensor.b64, f"{field}.b64")
        array = from_raw_bytes(raw, tensor.datatype, tensor.shape, f"{field}.b64")
    elif tensor.data is not None:
        array = from_json_data(tensor.data, tensor.datatype, tensor.shape, f"{field}.data")
    else:
        raise BadRequest(f"{field}: binary tensor data is only read by the v2 binary protocol")
    return Tensor(tensor.name, tensor.datatype, array)


def from_json_data(data: list[Any], datatype: str, shape: Sequence[int], field: str) -> Array:
    """Flat or nested JSON elements as an array of ``shape``, refusing elements of the wrong type."""
    if datatype == "BYTES":
        return _bytes_from_json(data, shape, field)
    want = NUMPY_DTYPES[datatype]
    try:
        inferred = np.asarray(data)
    except ValueError:
        raise BadRequest(
            f"{field}: nested lists are ragged; give a flat list or one nested to the shape"
        ) from None
    if inferred.size and inferred.dtype.kind not in _JSON_KINDS[want.kind]:
        raise BadRequest(
            f"{field}: {datatype} takes {_kind_words(want.kind)}, got {_kind_words(inferred.dtype.kind)}"
        )
    _check_json_shape(inferred.shape, shape, field)
    if want.kind in "iu" and inferred.size:
        info = np.iinfo(want)
        low, high = inferred.min(), inferred.max()
        if low < info.min or high > info.max:
            raise BadRequest(
                f"{field}: values must fit {datatype} [{info.min}, {info.max}], got {low}..{high}"
            )
    return inferred.astype(want, copy=False).reshape(shape)


def from_raw_bytes(raw: bytes | memoryview, datatype: str, shape: Sequence[int], field: str) -> Array:
    """Raw little-endian bytes (BYTES: length-prefixed elements) as an array of ``shape``, without copying."""
    count = element_count(shape)
    if datatype == "BYTES":
        return deserialize_bytes(raw, count, field).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise BadRequest(
            f"{field}: shape {list(shape)} of {datatype} needs {expected} bytes "
            f"({count} x {dtype.itemsize}), got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def to_raw_bytes(array: Array, datatype: str) -> bytes:
    """The raw little-endian form Triton reads (BYTES: 4-byte length before each element)."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()


def serialize_bytes(array: Array) -> bytes:
    """BYTES elements framed as little-endian uint32 length + bytes, in row-major order."""
    parts: list[bytes] = []
    for item in array.flat:
        value = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(value)))
        parts.append(value)
    return b"".join(parts)


def deserialize_bytes(raw: bytes | memoryview, count: int, field: str) -> Array:
    """``count`` length-prefixed BYTES elements, exactly filling ``raw``."""
    view = memoryview(raw)
    items: list[bytes] = []
    offset = 0
    for index in range(count):
        if offset + 4 > len(view):
            raise BadRequest(f"{field}: BYTES element {index} has no length prefix; the data is truncated")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise BadRequest(f"{field}: BYTES element {index} claims {length} bytes; the data is truncated")
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != len(view):
        raise BadRequest(f"{field}: {len(view) - offset} bytes left over after {count} BYTES elements")
    array = np.empty(count, dtype=np.object_)
    array[:] = items
    return array


def to_json_data(array: Array, datatype: str, name: str) -> Any:
    """The elements flat in row-major order, as orjson serialises them (BYTES: UTF-8 text)."""
    if datatype == "BYTES":
        try:
            return [item.decode() if isinstance(item, bytes) else str(item) for item in array.flat]
        except UnicodeDecodeError:
            raise BadRequest(
                f"output {name!r} holds bytes that are not UTF-8 text; ask for it as raw bytes "
                '("b64": true, or binary_data in v2)'
            ) from None
    # orjson writes numpy arrays natively, without a Python float per element.
    return np.ascontiguousarray(array.reshape(-1))


class TensorSpec(Protocol):
    """Anything with a tensor's name, datatype and shape: a decoded tensor or a request's description."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> list[int]: ...


def check_inputs(tensors: Sequence[TensorSpec], info: ModelInfo, field: str = "inputs") -> None:
    """Refuse inputs the model does not take, missing inputs, and wrong datatypes or shapes."""
    seen: set[str] = set()
    for index, tensor in enumerate(tensors):
        where = f"{field}[{index}]"
        spec = info.input(tensor.name)
        if spec is None:
            names = ", ".join(repr(t.name) for t in info.metadata.inputs)
            raise BadRequest(
                f"{where}.name: model {info.metadata.name!r} has no input {tensor.name!r}; it takes {names}"
            )
        if tensor.name in seen:
            raise BadRequest(f"{where}.name: input {tensor.name!r} is given twice")
        seen.add(tensor.name)
        if tensor.datatype != spec.datatype:
            raise BadRequest(
                f"{where}.datatype: input {spec.name!r} is {spec.datatype}, got {tensor.datatype}"
            )
        if not shape_fits(tensor.shape, spec.shape):
            raise BadRequest(
                f"{where}.shape: input {spec.name!r} takes {spec.shape} (-1 is free), got {tensor.shape}"
            )
    missing = [
        t.name for t in info.metadata.inputs if t.name not in seen and t.name not in info.optional_inputs
    ]
    if missing:
        wanted = "; ".join(
            f"{t.name!r} ({t.datatype} {t.shape})" for t in info.metadata.inputs if t.name in missing
        )
        raise BadRequest(f"{field}: missing input {wanted}")


def check_outputs(names: Sequence[str], info: ModelInfo, field: str = "outputs") -> None:
    """Refuse outputs the model does not produce."""
    for index, name in enumerate(names):
        if info.output(name) is None:
            known = ", ".join(repr(t.name) for t in info.metadata.outputs)
            raise BadRequest(
                f"{field}[{index}].name: model {info.metadata.name!r} has no output {name!r}; it has {known}"
            )


def shape_fits(shape: Sequence[int], spec: Sequence[int]) -> bool:
    """True when ``shape`` has the rank of ``spec`` and equals it wherever ``spec`` is not -1."""
    return len(shape) == len(spec) and all(
        want < 0 or want == got for got, want in zip(shape, spec, strict=True)
    )


def _check_json_shape(got: tuple[int, ...], shape: Sequence[int], field: str) -> None:
    count = element_count(shape)
    if len(got) <= 1:
        size = got[0] if got else 1
        if size != count:
            raise BadRequest(f"{field}: shape {list(shape)} needs {count} elements, got {size}")
    elif list(got) != list(shape):
        raise BadRequest(
            f"{field}: nested data has shape {list(got)}, but the tensor's shape is {list(shape)}"
        )


def _bytes_from_json(data: list[Any], shape: Sequence[int], field: str) -> Array:
    flat = np.asarray(data, dtype=np.object_)
    if flat.ndim > 1:
        _check_json_shape(flat.shape, shape, field)
    flat = flat.reshape(-1)
    if flat.size != element_count(shape):
        raise BadRequest(
            f"{field}: shape {list(shape)} needs {element_count(shape)} elements, got {flat.size}"
        )
    if not all(isinstance(item, str) for item in flat):
        raise BadRequest(f"{field}: BYTES takes strings")
    out = np.empty(flat.size, dtype=np.object_)
    out[:] = [item.encode() for item in flat]
    return out.reshape(shape)


def _kind_words(kind: str) -> str:
    return {
        "b": "booleans",
        "i": "integers",
        "u": "integers",
        "f": "numbers",
        "U": "strings",
        "S": "strings",
    }.get(kind, "mixed or non-numeric values")


@dataclass(frozen=True, slots=True)
class InferResult:
    """Triton's answer: which model and version ran, and the output tensors."""

    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]


def encode_result(result: InferResult, b64_outputs: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The v2 JSON answer for a result; outputs named in ``b64_outputs`` carry base64 raw bytes."""
    outputs = []
    for tensor in result.outputs:
        entry = tensor_header(tensor)
        if tensor.name in b64_outputs:
            entry["b64"] = pybase64.b64encode(to_raw_bytes(tensor.array, tensor.datatype)).decode()
        else:
            entry["data"] = to_json_data(tensor.array, tensor.datatype, tensor.name)
        outputs.append(entry)
    return result_body(result, outputs)


def tensor_header(tensor: Tensor) -> dict[str, Any]:
    """An output's name, datatype and shape, to which its encoding adds the elements."""
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}


def result_body(result: InferResult, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The v2 answer around encoded ``outputs``: model, version and (when the request had one) id."""
    body: dict[str, Any] = {"model_name": result.model_name, "model_version": result.model_version}
    if result.id:
        body["id"] = result.id
    body["outputs"] = outputs
    return body
