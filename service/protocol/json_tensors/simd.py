"""The fast path for JSON tensor bodies: simdjson parses the body, and each input's ``data`` (flat, or nested
to a regular shape) goes to numpy as one buffer (pysimdjson's ``Array.as_buffer``), without a Python float
per element: a 3 MB densenet body in ~2.5 ms against ~15 ms for a typed parse plus ``np.asarray``.

It only ever answers "here is the body, read exactly as the precise path would read it", or ``None``: the
precise path (pydantic, then numpy) then parses the body again and explains what is wrong in its own words.
So anything unusual — a body that is not an object, duplicate keys, ragged or empty data, booleans, numbers
out of range for the buffer, a ``[`` inside a string — takes the precise path, and every error message
stays the precise path's.

Why simdjson beside orjson and pydantic: it is the one parser that hands a numeric array over as a buffer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.protocol.tensors import Array

# as_buffer element types: integers stay exact as int64 (uint64 for UINT64); everything else is read as
# float64, which is also what numpy makes of a list of Python floats.
# int64 for UINT64 too: numpy reads a list with an integer past int64 as floats, which the precise path
# then refuses; as_buffer refuses it here, so the body is handed back.
_BUFFER_TYPES: dict[str, tuple[str, type[np.generic]]] = {
    **{
        t: ("i", np.int64) for t in ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
    },
    **{t: ("d", np.float64) for t in ("FP16", "FP32", "FP64")},
}
# Integers past 2**53 are not exact as float64: numpy reads a list of integers as int64 and casts from that.
_EXACT_FLOAT_INTEGERS = 2.0**53


@dataclass(frozen=True, slots=True)
class JsonNumbers:
    """One input's ``data``: its elements flat, and the shape of its nesting (one dimension when flat)."""

    flat: Array
    nesting: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NumericBody:
    """A tensor body: every field as Python values, except the inputs' numeric ``data`` (each left as
    ``[]``), which is in ``numbers`` by input index."""

    fields: dict[str, Any]
    numbers: dict[int, JsonNumbers]


@dataclass(frozen=True, slots=True)
class ValueBound:
    """What a big body may hold for the fast path to read it (``json_tensors.outline`` counts it): ``values``
    bounds its JSON values from above, and at most ``outside`` of them may lie outside the numeric data,
    which is all the fast path turns into Python objects."""

    values: int
    outside: int


def parse_numeric_body(body: bytes, bound: ValueBound | None = None) -> NumericBody | None:
    """The body with its inputs' numeric ``data`` read as buffers, or None (let the precise path read it).
    With a ``bound``, None too when more than ``bound.outside`` values may lie outside that data: they are
    counted once the data is read, before anything else is made a Python value."""
    import simdjson  # on the first JSON tensor, not at a cold start's import

    parser = _parser(simdjson)
    try:
        document = parser.parse(body)
    except ValueError:
        return None
    except RuntimeError:
        # Either the thread's parser is still referenced (never by this module), or simdjson refused the
        # body with a RuntimeError (BIGINT_ERROR: an integer below -2**63). A fresh parser tells them apart.
        try:
            document = simdjson.Parser().parse(body)
        except (ValueError, RuntimeError):
            return None
    if not isinstance(document, simdjson.Object):
        return None
    try:
        read = _read(document, simdjson.Object, simdjson.Array, bound)
    except (TypeError, ValueError, KeyError):
        return None
    finally:
        del document
    if read is None:
        return None
    parsed, arrays = read
    # A '[' the count does not expect is an array hidden among the numbers (as_buffer would flatten it),
    # or only a bracket inside a string: either way, the precise path.
    return parsed if _brackets(body, arrays) == arrays else None


def mentions_data(body: bytes) -> bool:
    """Whether the body may hold a ``"data"`` key, i.e. JSON tensor elements for the fast path to read."""
    return mentions(body, b"data")


def mentions(body: bytes, key: bytes) -> bool:
    """Whether ``"<key>"`` may be in the body (as a key, or a string).

    It hops from quote to quote (find is memchr): a base64 string holds none, so an 800 kB ``b64`` input is
    skipped in one step, where ``b'"data"' in body`` scans every byte (~0.4 ms). A wrong guess (an escaped
    quote) only picks the slower of two exact paths."""
    closed = key + b'"'
    at = body.find(b'"')
    while at != -1:
        if body.startswith(closed, at + 1):
            return True
        at = body.find(b'"', at + 1)
    return False


_THREAD = threading.local()


def _parser(simdjson: Any) -> Any:
    """This thread's parser, reused: a fresh one allocates (and the kernel zero-fills) its buffers for every
    body, which costs as much again as parsing a 3 MB body. It keeps the capacity of the largest body it
    has parsed (bounded by MAX_BODY_BYTES); nothing it parsed outlives a call (the buffers are copies)."""
    parser = getattr(_THREAD, "parser", None)
    if parser is None:
        parser = _THREAD.parser = simdjson.Parser()
    return parser


def _brackets(body: bytes, most: int) -> int:
    """How many '[' the body holds, counting no further than one past ``most``. (find is memchr: 30x
    faster than bytes.count on a 3 MB body.)"""
    count, at = 0, body.find(b"[")
    while at != -1 and count <= most:
        count += 1
        at = body.find(b"[", at + 1)
    return count


def _read(
    document: Any, object_type: Any, array_type: Any, bound: ValueBound | None
) -> tuple[NumericBody, int] | None:
    """The body's fields and numeric data, and how many arrays (so '[') it is made of."""
    fields: dict[str, Any] = {}
    numbers: dict[int, JsonNumbers] = {}
    # Values left as simdjson's lazy proxies until the numeric data is read and the rest known to be small.
    pending: list[tuple[dict[str, Any], str, Any]] = []
    arrays = 0  # '[' the body must hold: every array outside the numeric data, plus the data's own
    # keys() and indexing, not items(): items() would turn every value, the big arrays too, into Python.
    for key in document.keys():  # noqa: SIM118 — a simdjson Object iterates differently
        value = document[key]
        if key in fields:
            return None  # duplicate keys: let the precise path decide which one counts
        if key == "inputs" and isinstance(value, array_type):
            inputs: list[Any] = []
            arrays += 1
            for index, tensor in enumerate(value):
                if not isinstance(tensor, object_type):
                    return None
                entry, entry_arrays = _read_input(tensor, index, numbers, pending, object_type, array_type)
                if entry is None:
                    return None
                arrays += entry_arrays
                inputs.append(entry)
            fields[key] = inputs
        else:
            fields[key] = None
            pending.append((fields, key, value))
    if bound is not None:
        data = sum(int(found.flat.size) for found in numbers.values())
        if bound.values - data > bound.outside:
            return None
    for target, key, value in pending:
        python = _python(value, object_type, array_type)
        arrays += _count_lists([python])
        target[key] = python
    return NumericBody(fields, numbers), arrays


def _read_input(
    tensor: Any,
    index: int,
    numbers: dict[int, JsonNumbers],
    pending: list[tuple[dict[str, Any], str, Any]],
    object_type: Any,
    array_type: Any,
) -> tuple[dict[str, Any] | None, int]:
    """One input's fields, its numeric ``data`` put in ``numbers`` and the rest in ``pending``; and how many
    arrays its numeric data is made of."""
    entry: dict[str, Any] = {}
    arrays = 0
    datatype = tensor.get("datatype")
    for key in tensor.keys():  # noqa: SIM118
        value = tensor[key]
        if key in entry:
            return None, 0
        buffer_type = _BUFFER_TYPES.get(datatype) if isinstance(datatype, str) else None
        nesting = _nesting(value, array_type) if key == "data" and isinstance(value, array_type) else None
        if buffer_type is None or nesting is None:
            entry[key] = None
            pending.append((entry, key, value))
            continue
        of_type, dtype = buffer_type
        flat = np.frombuffer(value.as_buffer(of_type=of_type), dtype=dtype)
        # Two reductions rather than np.abs, which would copy the whole array first.
        if of_type == "d" and max(-float(flat.min()), float(flat.max())) >= _EXACT_FLOAT_INTEGERS:
            # All integers: numpy keeps them as int64, so read them exactly. Some floats (TypeError):
            # numpy reads the list as float64, as already done.
            with contextlib.suppress(TypeError):
                flat = np.frombuffer(value.as_buffer(of_type="i"), dtype=np.int64)
        numbers[index] = JsonNumbers(flat, nesting)
        entry[key] = []
        arrays += _array_count(nesting)
    return entry, arrays


def _nesting(array: Any, array_type: Any) -> tuple[int, ...] | None:
    """The dimensions of a regularly nested array (every array of a level as long, none empty); None if
    it is not. The leaf level is not walked: the bracket count catches an array hidden there."""
    dims: list[int] = []
    level = [array]
    while True:
        length = len(level[0])
        if length == 0 or any(len(item) != length for item in level):
            return None
        dims.append(length)
        if not isinstance(level[0][0], array_type):
            return tuple(dims)
        below = [item for parent in level for item in parent]
        if not all(isinstance(item, array_type) for item in below):
            return None
        level = below


def _array_count(nesting: tuple[int, ...]) -> int:
    """How many arrays a regular nesting of these dimensions is made of: 1 + d0 + d0*d1 + ..."""
    count, width = 1, 1
    for dim in nesting[:-1]:
        width *= dim
        count += width
    return count


def _python(value: Any, object_type: Any, array_type: Any) -> Any:
    if isinstance(value, object_type):
        return value.as_dict()
    if isinstance(value, array_type):
        return value.as_list()
    return value


def _count_lists(values: Iterable[Any]) -> int:
    count = 0
    stack = list(values)
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            count += 1
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return count
