"""Tensors between the wire and numpy: JSON elements, base64 and raw little-endian bytes, BYTES framing."""

from __future__ import annotations

import binascii
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pybase64  # SIMD base64: 40x CPython's on a 600 kB tensor, the b64 fast path's main cost

from service.errors import BadRequest
from service.protocol.schemas import TensorIn
from service.protocol.tensors import NUMPY_DTYPES, Array, Tensor, element_count

# What JSON can give for each datatype family, as numpy's inferred kinds: bool, signed/unsigned ints, floats.
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def base64_bytes(text: str, field: str) -> bytes:
    """Strict base64 (no stray characters) decoded; 400 naming ``field`` when it is not."""
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{field}: not valid base64 ({exc})") from None


def decode_input(tensor: TensorIn, field: str, numbers: tuple[Array, Sequence[int]] | None = None) -> Tensor:
    """The numpy form of a JSON or base64 input; ``field`` names it in errors, e.g. ``inputs[0]``.
    ``numbers``: its JSON ``data`` already read as a flat buffer and the shape of its nesting."""
    if numbers is not None:
        flat, nesting = numbers
        array = from_json_numbers(flat, nesting, tensor.datatype, tensor.shape, f"{field}.data")
    elif tensor.b64 is not None:
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
    return _cast_checked(inferred, want, datatype, shape, field)


def from_json_numbers(
    flat: Array, nesting: Sequence[int], datatype: str, shape: Sequence[int], field: str
) -> Array:
    """JSON numbers already read into one flat buffer (``json_tensors.simd``: float64, or int64/uint64
    for integer datatypes), with the shape of their nesting: the same checks, messages and result as
    :func:`from_json_data` on the same elements."""
    want = NUMPY_DTYPES[datatype]
    _check_json_shape(tuple(nesting), shape, field)
    return _cast_checked(flat, want, datatype, shape, field)


def _cast_checked(
    values: Array, want: np.dtype[Any], datatype: str, shape: Sequence[int], field: str
) -> Array:
    """``values`` cast to ``want`` and shaped; 400 when an integer datatype cannot hold one of them."""
    if want.kind in "iu" and values.size:
        info = np.iinfo(want)
        low, high = values.min(), values.max()
        if low < info.min or high > info.max:
            raise BadRequest(
                f"{field}: values must fit {datatype} [{info.min}, {info.max}], got {low}..{high}"
            )
    return values.astype(want, copy=False).reshape(shape)


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
    dtype = NUMPY_DTYPES[datatype]
    # A tensor decoded from base64 is a view of the decoded bytes: hand those over rather than copy 600 kB.
    owner = array
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    base = owner.base
    if (
        isinstance(base, bytes)
        and array.dtype == dtype
        and array.flags.c_contiguous
        and array.nbytes == len(base)
    ):
        return base
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def raw_buffer(array: Array, datatype: str) -> bytes | memoryview:
    """The raw little-endian form Triton reads, as a view of the array's own memory when it already is
    that form (a tensor decoded from base64 or a v2 binary section: no copy); otherwise as new bytes."""
    if datatype != "BYTES" and array.dtype == NUMPY_DTYPES[datatype] and array.flags.c_contiguous:
        return array.data
    return to_raw_bytes(array, datatype)


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
