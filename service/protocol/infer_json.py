"""The ``/infer`` JSON body -> :class:`InferenceRequest` (``inputs``: tensors) or :class:`ImageRequest`
(``image``/``images``: base64 files).

The one JSON tensor reader reads a tensor body at once when it can; any other body is first held to the
reader's limits (413/400 before anything is parsed), then only its keys are read: they name the model and
pick the schema, so the model is resolved (an unknown one answered 404) before the body is judged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import BadRequest, describe_validation_errors
from service.protocol.classification import encode_image_results
from service.protocol.json_tensors import InvalidTensorBody, JsonTensors, Reading, read_json_tensors
from service.protocol.metadata import ModelInfo
from service.protocol.request import (
    Answer,
    ImageRequest,
    ImageResult,
    Images,
    InferenceRequest,
    Limits,
    ModelRef,
    OutputAsk,
    Tensors,
)
from service.protocol.results import encode_result
from service.protocol.schemas import ImageInferRequest, TensorInferRequest
from service.protocol.tensors import InferResult, Tensor

_IMAGE_KEYS = frozenset({"image", "images"})
Kind = Literal["tensors", "images", "both", "neither"]


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
    kind: Kind


def read_infer_body_keys(body: bytes) -> InferBodyKeys:
    """The body's model, version and kind; 400 when it is not a JSON object or its model/version is bad."""
    try:
        keys = _Keys.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(describe_validation_errors(exc.errors(include_url=False))) from None
    present = keys.model_fields_set
    tensors, images = "inputs" in present, bool(present & _IMAGE_KEYS)
    kind: Kind = ("both" if images else "tensors") if tensors else ("images" if images else "neither")
    return InferBodyKeys(keys.model, keys.version, kind)


def decode_infer_json(body: bytes, limits: Limits) -> InferenceRequest | ImageRequest:
    """The request an ``/infer`` JSON body makes (its tensors or images read once its model is known)."""
    reading = read_json_tensors(body, TensorInferRequest, limits.element_limit)
    if reading.fast is not None:
        request = reading.fast.request
        model = _model_ref(request.model, request.version)
        return InferenceRequest(model, _tensors_of(reading, "tensors"), len(body))
    keys = read_infer_body_keys(body)
    model = _model_ref(keys.model, keys.version)
    if keys.kind == "images":
        return ImageRequest(model, lambda: _json_images(body), len(body))
    return InferenceRequest(model, _tensors_of(reading, keys.kind), len(body))


def _model_ref(name: str | None, version: str | None) -> ModelRef:
    return ModelRef(name, version or "")


def _tensors_of(reading: Reading[TensorInferRequest], kind: Kind) -> Callable[[ModelInfo], Tensors]:
    def read(info: ModelInfo) -> Tensors:
        if kind == "both":
            raise BadRequest("the body mixes 'inputs' (tensors) with 'image'/'images'; give one or the other")
        try:
            found = reading.tensors(info)
        except InvalidTensorBody as exc:
            if kind == "neither" and [(e["type"], e["loc"]) for e in exc.errors] == [
                ("missing", ("inputs",))
            ]:
                raise BadRequest(
                    "the body needs 'inputs' (tensors) or 'image'/'images' (base64 images)"
                ) from None
            # Other keys too (an old Chalice body, say): the tensor schema's own errors name them.
            raise
        return _tensors(found)

    return read


def _tensors(found: JsonTensors[TensorInferRequest]) -> Tensors:
    request = found.request
    asked = (
        tuple(OutputAsk(output.name, "b64" if output.b64 else "json") for output in request.outputs)
        if request.outputs
        else None
    )

    def decode() -> list[Tensor]:
        return [found.decode_input(i, tensor, f"inputs[{i}]") for i, tensor in enumerate(request.inputs)]

    # /infer forwards no request parameters to Triton.
    return Tensors(request.inputs, decode, Answer(asked), {}, request.id or "")


def _json_images(body: bytes) -> Images:
    try:
        request = ImageInferRequest.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(describe_validation_errors(exc.errors(include_url=False))) from None
    return Images(request.encoded_images(), request.top_k, request.id or "")


def encode_infer_json(result: InferResult | ImageResult, answer: Answer) -> dict[str, Any]:
    """The ``/infer`` answer: the outputs (base64 raw bytes where asked), or one entry per image."""
    if isinstance(result, ImageResult):
        return encode_image_results(result.results, batched=result.batched, classes_of=result.classified)
    return encode_result(result, answer.named("b64", [tensor.name for tensor in result.outputs]))
