"""The reader's memory bound: a JSON tensor body checked against its limits and the model before it is
materialised.

pydantic parses a whole body into a value tree before validating it: a 16 MB body of ``0,0,0,...`` costs
~200 MB before its first error, ~77 bytes per element. This module reads only the outline of the body with
msgspec (``msgspec.Raw`` keeps each input's ``data`` as a byte span, unparsed), counts the elements of each
span, and checks names, datatypes, shapes and counts against the model's metadata. Only a body that fits the
model is then parsed. (msgspec rather than a hand-written scanner: it validates the JSON syntax while it
skips, at C speed, and gives exact spans.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

import msgspec
import numpy as np

from service.errors import BadRequest, PayloadTooLarge
from service.protocol.checks import check_inputs
from service.protocol.json_tensors.simd import ValueBound
from service.protocol.metadata import ModelInfo
from service.protocol.schemas import Datatype
from service.protocol.tensors import element_count

# Values a body may hold outside its inputs' data (shapes, parameters, outputs, keys' values): thousands in
# any real request; the bound keeps a junk field from costing what a tensor would.
MAX_STRUCTURE_VALUES = 65_536
# Below this size a body goes straight to pydantic: parsing it costs at most ~40 MB (~77 bytes per element).
PRESCAN_BYTES = 1 << 20
# Data this small is left to pydantic's messages even when the outline around it is malformed.
_SMALL_DATA = 4_096
_DATATYPES = frozenset(get_args(Datatype))
_QUOTE, _COMMA = ord('"'), ord(",")
_COMMA_BYTE = np.uint8(_COMMA)
_SLICE = 1 << 20
_NOTHING = msgspec.Raw(b"")


class _Tensor(msgspec.Struct):
    name: msgspec.Raw = _NOTHING
    datatype: msgspec.Raw = _NOTHING
    shape: msgspec.Raw = _NOTHING
    data: msgspec.Raw = _NOTHING


class _Body(msgspec.Struct):
    inputs: list[_Tensor] = []


@dataclass(frozen=True, slots=True)
class TensorOutline:
    """An input's name, datatype and shape as the body gives them, and how many JSON elements its data has
    (None without ``data``: b64 or binary data are bounded by their bytes)."""

    name: str
    datatype: str
    shape: list[int]
    elements: int | None
    well_formed: bool


@dataclass(frozen=True, slots=True)
class BodyOutline:
    """What a JSON tensor body says before it is parsed: its inputs."""

    inputs: list[TensorOutline]


def outline(body: bytes) -> BodyOutline:
    """The body's outline; 400 "Invalid JSON" for a body that is not JSON (nothing is materialised)."""
    try:
        top = msgspec.json.decode(body, type=_Body)
    except msgspec.ValidationError:
        # Valid JSON, but not an object with a list of objects as inputs: pydantic will name what is
        # wrong; only the count of values is checked here.
        return BodyOutline([])
    except msgspec.DecodeError as exc:
        raise BadRequest(f"Invalid JSON: {exc}") from None
    inputs = [_outline(tensor) for tensor in top.inputs]
    return BodyOutline(inputs)


def guard(body: bytes, element_limit: int) -> BodyOutline | None:
    """Refuse, before parsing, a body that holds more than ``element_limit`` data elements, data that do
    not hold their shapes' element counts, or more than :data:`MAX_STRUCTURE_VALUES` values outside the
    data; the outline, for :func:`check_against_model`. None for a body too small to need it."""
    if len(body) <= PRESCAN_BYTES:
        return None
    found = outline(body)
    data = 0
    for index, tensor in enumerate(found.inputs):
        if tensor.elements is None:
            continue
        data += tensor.elements
        if not tensor.well_formed:
            if tensor.elements > _SMALL_DATA:
                raise BadRequest(
                    f"inputs[{index}]: name, datatype and shape must be valid (a name, a v2 datatype, a list "
                    f"of non-negative integers) for its {tensor.elements} data elements to be read"
                )
        elif tensor.elements != element_count(tensor.shape):
            raise BadRequest(
                f"inputs[{index}].data: shape {tensor.shape} needs {element_count(tensor.shape)} elements, "
                f"got {tensor.elements}"
            )
    if data > element_limit:
        raise PayloadTooLarge(
            f"inputs: {data} elements in all; at most {element_limit} are taken per request as JSON "
            "(send large tensors as b64, or with the v2 binary extension)"
        )
    # Commas bound the body's values from above (commas inside strings count too): count exactly only
    # when that bound is past the limit.
    if _comma_count(body) + 1 > data + MAX_STRUCTURE_VALUES:
        outside = count_values(body) - data
        if outside > MAX_STRUCTURE_VALUES:
            raise BadRequest(
                f"body: {outside} JSON values outside the inputs' data; at most {MAX_STRUCTURE_VALUES}"
            )
    return found


def fast_read_bound(body: bytes, element_limit: int) -> ValueBound | None:
    """How far the SIMD fast path may read ``body`` before :func:`guard` has seen it; None: not at all.

    One parse instead of two (the outline, then the body) for a big body that is what it looks like.
    Every value but the first of an array or object follows a comma, so commas plus brackets plus braces
    bound the values from above; counted at memory speed (numpy for the commas, memchr hops for the few
    brackets and braces), that bound keeps simdjson's tape as small as the guard would. The fast path then
    turns no more than :data:`MAX_STRUCTURE_VALUES` values outside the numeric data into Python objects,
    and the reader sends what the guard would refuse back to it, for its words."""
    if len(body) <= PRESCAN_BYTES:
        return ValueBound(len(body), len(body))  # no JSON value takes less than a byte
    most = element_limit + MAX_STRUCTURE_VALUES
    values = _comma_count(body) + 1
    for opening in (b"[", b"{"):
        at = body.find(opening)
        while at != -1 and values <= most:
            values += 1
            at = body.find(opening, at + 1)
    return ValueBound(values, MAX_STRUCTURE_VALUES) if values <= most else None


def check_against_model(found: BodyOutline | None, info: ModelInfo) -> None:
    """The inputs' names, datatypes and shapes checked against the model before the body is parsed (the
    data plane checks the parsed request again; this spares parsing a body the model would refuse)."""
    if found is not None and found.inputs and all(tensor.well_formed for tensor in found.inputs):
        check_inputs(found.inputs, info)


def count_values(raw: bytes | memoryview) -> int:
    """How many scalar JSON values ``raw`` holds (a comma separates each from the next), without parsing."""
    text = bytes(raw)
    commas = _commas_outside_strings(text) if b'"' in text else _comma_count(text)
    if commas == 0 and not text.strip(b"[] \t\r\n"):
        return 0  # [] or [[]]: no value at all
    return commas + 1


def _comma_count(text: bytes) -> int:
    # numpy's compare-and-count is ~9x faster than bytes.count on a 3 MB body.
    return int(np.count_nonzero(np.frombuffer(text, np.uint8) == _COMMA_BYTE))


def _commas_outside_strings(text: bytes) -> int:
    # Escaped backslashes, then escaped quotes, out of the way: every quote left opens or closes a string.
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    view = np.frombuffer(text, np.uint8)
    outside, in_string = 0, 0
    # In slices, so the index arrays stay small (a body of 2.5 M empty strings has 5 M quotes).
    for start in range(0, len(view), _SLICE):
        part = view[start : start + _SLICE]
        quotes = np.flatnonzero(part == _QUOTE)
        commas = np.flatnonzero(part == _COMMA)
        # A comma is inside a string when an odd number of quotes (those before the slice too) precede it.
        inside = (np.searchsorted(quotes, commas) + in_string) % 2
        outside += len(commas) - int(np.count_nonzero(inside))
        in_string = (in_string + len(quotes)) % 2
    return outside


def _outline(tensor: _Tensor) -> TensorOutline:
    name = _decode(tensor.name, str)
    datatype = _decode(tensor.datatype, str)
    shape = _decode(tensor.shape, list[int])
    elements = count_values(tensor.data) if len(tensor.data) else None
    well_formed = bool(name) and datatype in _DATATYPES and shape is not None and all(d >= 0 for d in shape)
    return TensorOutline(name or "", datatype or "", shape or [], elements, well_formed)


def _decode(raw: msgspec.Raw, kind: Any) -> Any:
    if not len(raw):
        return None
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
