"""The ``/infer`` JSON body before it is parsed: which model it names and which schema its top-level keys
choose (``inputs`` -> tensors, ``image``/``images`` -> images), read without materialising the tensors,
so the model is resolved (and an unknown one answered 404) before the body is judged; then the tensor
body as the data plane takes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import BadRequest, describe_validation_errors
from service.protocol.checks import check_outputs
from service.protocol.codecs import decode_input
from service.protocol.json_numbers import JsonNumbers, mentions, mentions_data
from service.protocol.metadata import ModelInfo
from service.protocol.prescan import fast_read, fast_read_bound
from service.protocol.schemas import TensorIn, TensorInferRequest
from service.protocol.tensors import OutputSpec, Tensor

_IMAGE_KEYS = frozenset({"image", "images"})


class _Skipped(BaseModel):
    # An object whose fields are all ignored: pydantic-core walks it without building Python values.
    model_config = ConfigDict(extra="ignore")


class _Keys(BaseModel):
    """The keys that pick the schema and the model; nothing else of the body is built."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    model: str | None = Field(None, min_length=1)
    version: str | None = None
    # Left to right: a well-formed tensor list is skipped cheaply; anything else is kept to be judged later.
    inputs: Annotated[list[_Skipped] | Any, Field(union_mode="left_to_right")] = None
    image: Any = None
    images: Any = None


@dataclass(frozen=True, slots=True)
class InferBodyKeys:
    """What an ``/infer`` JSON body names: its model and version (None: the defaults), and its kind."""

    model: str | None
    version: str | None
    kind: Literal["tensors", "images", "both", "neither"]


def read_infer_body_keys(body: bytes) -> InferBodyKeys:
    """The body's model, version and kind; 400 when it is not a JSON object or its model/version is bad."""
    try:
        keys = _Keys.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(describe_validation_errors(exc.errors(include_url=False))) from None
    present = keys.model_fields_set
    tensors, images = "inputs" in present, bool(present & _IMAGE_KEYS)
    kind: Literal["tensors", "images", "both", "neither"] = (
        ("both" if images else "tensors") if tensors else ("images" if images else "neither")
    )
    return InferBodyKeys(keys.model, keys.version, kind)


def fast_tensor_request(body: bytes, element_limit: int) -> tuple[InferBodyKeys, JsonTensors] | None:
    """A valid tensor body read by the SIMD fast path (numeric ``data`` as buffers), with its keys; None
    for anything else, which :func:`read_infer_body_keys` and :func:`tensor_request` then read and judge
    (after ``prescan.guard`` for a big body)."""
    if not mentions(body, b"inputs"):
        return None  # an image body, say: a failed tensor parse would only add a third read of it
    if not mentions_data(body):
        # Only base64 inputs: pydantic's own parser is the faster one, within the guard's bound.
        if fast_read_bound(body, element_limit) is None:
            return None
        try:
            request = TensorInferRequest.model_validate_json(body)
        except ValidationError:
            return None
        return InferBodyKeys(request.model, request.version, "tensors"), JsonTensors(request)
    found = fast_read(body, TensorInferRequest, element_limit)
    # The schema ignores other keys: image keys beside the inputs are the precise path's "mixes" error.
    if found is None or not _IMAGE_KEYS.isdisjoint(found[1].fields):
        return None
    request, parsed = found
    return InferBodyKeys(request.model, request.version, "tensors"), JsonTensors(request, parsed.numbers)


def tensor_request(body: bytes, keys: InferBodyKeys) -> JsonTensors:
    """The body parsed as tensors; 400 saying what it mixes or lacks, or naming the field."""
    if keys.kind == "both":
        raise BadRequest("the body mixes 'inputs' (tensors) with 'image'/'images'; give one or the other")
    try:
        return JsonTensors(TensorInferRequest.model_validate_json(body))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if keys.kind == "neither" and [(e["type"], e["loc"]) for e in errors] == [("missing", ("inputs",))]:
        raise BadRequest("the body needs 'inputs' (tensors) or 'image'/'images' (base64 images)")
    # Other keys too (an old Chalice body, say): the tensor schema's own errors name them.
    raise BadRequest(describe_validation_errors(errors))


@dataclass(frozen=True, slots=True)
class JsonTensors:
    """An ``/infer`` tensor body as the data plane runs it: inputs as JSON ``data`` or base64 ``b64``."""

    request: TensorInferRequest
    # Inputs whose JSON data the fast path read as buffers (their ``data`` in ``request`` is empty).
    numbers: Mapping[int, JsonNumbers] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        """The caller's request id, echoed in the answer."""
        return self.request.id or ""

    @property
    def parameters(self) -> dict[str, Any]:
        """``/infer`` forwards no request parameters to Triton."""
        return {}

    @property
    def declared_inputs(self) -> Sequence[TensorIn]:
        """The inputs as the body describes them, checked before they are decoded."""
        return self.request.inputs

    def decode(self) -> list[Tensor]:
        """The inputs as numpy arrays."""
        return [
            decode_input(tensor, f"inputs[{i}]", _buffer(self.numbers.get(i)))
            for i, tensor in enumerate(self.request.inputs)
        ]

    def outputs(self, info: ModelInfo) -> list[OutputSpec]:
        """The outputs asked for (checked against the model), or all of the model's."""
        if not self.request.outputs:
            return [OutputSpec(output.name) for output in info.metadata.outputs]
        names = [output.name for output in self.request.outputs]
        check_outputs(names, info)
        return [OutputSpec(name) for name in names]

    @property
    def b64_outputs(self) -> frozenset[str]:
        """The outputs to answer as base64 raw bytes."""
        return frozenset(output.name for output in self.request.outputs or () if output.b64)


def _buffer(numbers: JsonNumbers | None) -> tuple[Any, Sequence[int]] | None:
    return None if numbers is None else (numbers.flat, numbers.nesting)
