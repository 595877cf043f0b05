"""Request and response models on the wire. ``/infer`` and the KServe v2 routes share the tensor types."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    RootModel,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

# The envelopes live apart so that /health builds them without every request model; re-exported here.
from service.protocol.envelopes import ErrorBody as ErrorBody
from service.protocol.envelopes import HealthBody as HealthBody

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip

# Validated as a plain JSON array (pydantic-core builds it as fast as orjson); numpy checks the element
# types and the nesting in one pass later, which a recursive pydantic union would do element by element.
TensorData = Annotated[
    list[Any],
    WithJsonSchema(
        {
            "type": "array",
            "description": "Elements in row-major order, flat or nested to the tensor's shape.",
            "items": {
                "anyOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}, {"type": "array"}]
            },
        }
    ),
]
Base64Text = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "format": "byte",
            "description": "Base64 of the raw little-endian bytes (BYTES: 4-byte length before each item).",
        }
    ),
]
Parameters = dict[str, Any]


class TensorIn(BaseModel):
    """One input tensor: its elements come from ``data`` (JSON), ``b64`` (raw bytes) or a binary section."""

    name: str = Field(min_length=1)
    datatype: Datatype
    shape: list[NonNegativeInt]
    data: TensorData | None = None
    b64: Base64Text | None = None
    parameters: Parameters | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        binary = self.parameters is not None and "binary_data_size" in self.parameters
        if (self.data is not None) + (self.b64 is not None) + binary != 1:
            raise PydanticCustomError(
                "tensor_source", "give exactly one of 'data' (JSON elements) or 'b64' (base64 raw bytes)"
            )
        return self


class OutputRequest(BaseModel):
    """An output the caller wants; ``b64`` answers its raw little-endian bytes in base64, not JSON."""

    name: str = Field(min_length=1)
    b64: bool = False
    parameters: Parameters | None = None


class V2InferRequest(BaseModel):
    """KServe v2 inference request body (``POST /v2/models/{model}/infer``)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[TensorIn] = Field(min_length=1)
    outputs: list[OutputRequest] | None = None


class ModelChoice(BaseModel):
    """Which model an ``/infer`` body runs (tensors and images alike)."""

    model: str | None = Field(
        None, min_length=1, description="model name; the configured default when omitted"
    )
    version: str | None = Field(None, description="model version; Triton's version policy picks when omitted")


class TensorInferRequest(ModelChoice, V2InferRequest):
    """``POST /infer``: the v2 body plus the model to run; omitted outputs mean all of them."""

    # The document's examples are per operation (service/openapi_examples.py), where a test runs them.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


ImageText = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "format": "byte",
            "description": "Base64 of a JPEG, PNG or WebP file (a `data:image/...;base64,` prefix is fine)",
        }
    ),
]


class ImageInferRequest(ModelChoice):
    """``POST /infer`` with images: each is decoded, resized and scaled to the model's image input."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    id: str | None = None
    image: ImageText | None = Field(None, description="one image")
    images: list[ImageText] | None = Field(
        None, min_length=1, description="several images, answered in order"
    )
    top_k: PositiveInt | None = Field(
        None,
        description="answer the k best classes (labels from the model's label file) instead of raw outputs",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.image is None) == (self.images is None):
            raise PydanticCustomError("image_source", "give exactly one of 'image' or 'images'")
        return self

    def encoded_images(self) -> list[tuple[str, str]]:
        """Each image's base64 text with the field that names it in errors: ``image`` or ``images[i]``."""
        if self.image is not None:
            return [("image", self.image)]
        return [(f"images[{i}]", text) for i, text in enumerate(self.images or ())]


def _infer_body_schema(schema: dict[str, Any]) -> None:
    # The two bodies exclude each other (each refuses the other's keys), so exactly one matches.
    schema["oneOf"] = schema.pop("anyOf")


class InferRequest(RootModel[TensorInferRequest | ImageInferRequest]):
    """The ``/infer`` JSON body as OpenAPI shows it: tensors or images. The route parses the member the
    body's keys name (``inputs`` or ``image``/``images``), so this union only documents."""

    model_config = ConfigDict(json_schema_extra=_infer_body_schema)


class TensorOut(BaseModel):
    """One output tensor: ``data`` holds the elements flat in row-major order (or ``b64`` when asked)."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    b64: str | None = None
    parameters: Parameters | None = None


class InferResponse(BaseModel):
    """The answer to an inference request (KServe v2 field names)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[TensorOut]


class ClassScore(BaseModel):
    """One class of a top-k answer, best first."""

    label: str = Field(description="the class's line in the model's label file")
    index: int = Field(description="the class's position in the model's output")
    score: float


class ImageResult(BaseModel):
    """The answer for one image: its ``top_k`` classes, or the model's raw ``outputs`` for it."""

    top_k: list[ClassScore] | None = None
    outputs: list[TensorOut] | None = None


class ImageInferResponse(BaseModel):
    """The answer to an image request: one result per image, in the order they were given."""

    model_name: str
    model_version: str
    id: str | None = None
    results: list[ImageResult]
