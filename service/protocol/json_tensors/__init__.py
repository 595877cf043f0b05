"""The one reader of JSON tensor bodies, for ``/infer`` and ``/v2`` alike: :func:`read_json_tensors`.

A body is read once, by the first of these that reads it exactly as the precise path would:

1. base64 inputs cut straight from the body (``b64``: memchr hops, no JSON parser over the base64);
2. numeric ``data`` as buffers (``simd``: simdjson, one numpy buffer per input), within a bound on the
   values a big body may hold (``outline.fast_read_bound``), so it never holds more than the guard allows;
3. otherwise the precise path: the outline's guard (``outline``: element and value counts, before any
   parse: a 16 MB bomb costs no memory), then, once the model is known, its shapes against the model, then
   the request's pydantic schema, whose errors name the field.

Every fast path answers "here is the body as the precise path reads it" or hands the body on, so the choice
is invisible from outside; ``fast=False`` runs the precise path alone, and the tests compare the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from service.errors import BadRequest, describe_validation_errors
from service.protocol.codecs import decode_input, from_raw_bytes
from service.protocol.json_tensors.b64 import read_b64
from service.protocol.json_tensors.outline import (
    PRESCAN_BYTES,
    BodyOutline,
    check_against_model,
    fast_read_bound,
    guard,
)
from service.protocol.json_tensors.simd import JsonNumbers, mentions, mentions_data, parse_numeric_body
from service.protocol.metadata import ModelInfo
from service.protocol.schemas import TensorIn, V2InferRequest
from service.protocol.tensors import Tensor, element_count

R = TypeVar("R", bound=V2InferRequest)


class InvalidTensorBody(BadRequest):
    """The precise path's refusal: the schema's errors, described (a decoder may word some of them)."""

    def __init__(self, errors: list[ErrorDetails]) -> None:
        super().__init__(describe_validation_errors(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class JsonTensors(Generic[R]):
    """A tensor body as read: the validated request, and the inputs a fast path already read (numeric
    ``data`` as buffers, base64 decoded from the body), by input index."""

    request: R
    numbers: Mapping[int, JsonNumbers] = field(default_factory=dict)
    decoded: Mapping[int, bytes] = field(default_factory=dict)

    def decode_input(self, index: int, tensor: TensorIn, where: str) -> Tensor:
        """Input ``index`` (a JSON or base64 one) as numpy; ``where`` names it in errors."""
        raw = self.decoded.get(index)
        if raw is not None:
            array = from_raw_bytes(raw, tensor.datatype, tensor.shape, f"{where}.b64")
            return Tensor(tensor.name, tensor.datatype, array)
        numbers = self.numbers.get(index)
        return decode_input(tensor, where, None if numbers is None else (numbers.flat, numbers.nesting))


@dataclass(frozen=True, slots=True)
class Reading(Generic[R]):
    """A body the reader has seen: read already (``fast``), or outlined and waiting for the model."""

    body: bytes
    schema: type[R]
    fast: JsonTensors[R] | None
    outline: BodyOutline | None

    def tensors(self, info: ModelInfo | None) -> JsonTensors[R]:
        """The body read; the precise path checks the outline's shapes against the model (``info``) first,
        so a body the model refuses is never materialised. 400 naming the field otherwise."""
        if self.fast is not None:
            return self.fast
        if info is not None:
            check_against_model(self.outline, info)
        try:
            return JsonTensors(self.schema.model_validate_json(self.body))
        except ValidationError as exc:
            raise InvalidTensorBody(exc.errors(include_url=False)) from None


def read_json_tensors(body: bytes, schema: type[R], element_limit: int, *, fast: bool = True) -> Reading[R]:
    """Read ``body`` as ``schema`` by the fast paths when they can; otherwise outline it within the limits
    (413/400 here, before any parse) for :meth:`Reading.tensors` to parse once the model is known."""
    found = _read_fast(body, schema, element_limit) if fast else None
    if found is not None:
        return Reading(body, schema, found, None)
    return Reading(body, schema, None, guard(body, element_limit))


def _read_fast(body: bytes, schema: type[R], element_limit: int) -> JsonTensors[R] | None:
    if not mentions(body, b"inputs"):
        return None  # not tensors (an image body, say): a failed parse would only add a read
    if mentions_data(body):
        return _read_numbers(body, schema, element_limit)
    cut = read_b64(body, schema)
    if cut is not None:
        request, decoded = cut
        return JsonTensors(request, decoded=decoded)
    # Only short base64 inputs: pydantic's own parser is the fastest, within the guard's bound.
    if fast_read_bound(body, element_limit) is None:
        return None
    try:
        return JsonTensors(schema.model_validate_json(body))
    except ValidationError:
        return None


def _read_numbers(body: bytes, schema: type[R], element_limit: int) -> JsonTensors[R] | None:
    bound = fast_read_bound(body, element_limit)
    parsed = None if bound is None else parse_numeric_body(body, bound)
    if parsed is None:
        return None
    try:
        request = schema.model_validate(parsed.fields)
    except ValidationError:
        return None
    if not _fits(body, request.inputs, parsed.numbers, element_limit):
        return None
    return JsonTensors(request, parsed.numbers)


def _fits(
    body: bytes, inputs: Sequence[TensorIn], numbers: Mapping[int, JsonNumbers], element_limit: int
) -> bool:
    """Whether the fast path's reading of a big body is one the guard lets through unchanged: its numeric
    data within ``element_limit`` and each as long as its shape. Otherwise the guard answers, in the words
    it gives every big body."""
    if len(body) <= PRESCAN_BYTES:
        return True
    counts = {index: int(found.flat.size) for index, found in numbers.items()}
    return sum(counts.values()) <= element_limit and all(
        count == element_count(inputs[index].shape) for index, count in counts.items()
    )
