"""The canonical inference request every wire format decodes into (MLServer's ``InferenceRequest``): the
model it names, its inputs (read lazily, against the model, within the limits), the outputs asked for and
how each is answered, its parameters and id. Images have their own: :class:`ImageRequest`.

A body is read only once the data plane has resolved its model (:meth:`InferenceRequest.tensors`), so an
unknown model is 404 whatever the body holds; how each output is answered (:attr:`InferenceRequest.answer`)
travels with the request to the encoder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from service.protocol.checks import TensorSpec, check_outputs
from service.protocol.classification import check_classifiable
from service.protocol.metadata import ModelInfo
from service.protocol.tensors import InferResult, OutputSpec, Tensor
from service.settings import Settings

# How an output is answered: JSON elements, base64 raw bytes (/infer), or a v2 binary section.
Form = Literal["json", "b64", "binary"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may cost, from the settings: the decoders apply them while they read."""

    element_limit: int
    max_inflated_bytes: int
    max_images: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits ``settings`` configure."""
        return cls(settings.element_limit, settings.max_inflated_bytes, settings.max_images)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The model a request names: None for the configured default; version "" lets Triton's policy pick."""

    name: str | None
    version: str = ""


@dataclass(frozen=True, slots=True)
class OutputAsk:
    """One output asked for, how it is answered, and its top-k classification (0: the tensor itself)."""

    name: str
    form: Form = "json"
    class_count: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    """The outputs asked for (None: all of the model's, each answered as ``form``)."""

    asked: tuple[OutputAsk, ...] | None = None
    form: Form = "json"

    def specs(self, info: ModelInfo) -> list[OutputSpec]:
        """The outputs to ask Triton for, checked against the model."""
        if self.asked is None:
            return [OutputSpec(output.name) for output in info.metadata.outputs]
        check_outputs([ask.name for ask in self.asked], info)
        for index, ask in enumerate(self.asked):
            declared = info.output(ask.name)  # never None: check_outputs refused unknown names
            if ask.class_count and declared is not None:
                check_classifiable(declared, f"outputs[{index}].parameters.classification")
        return [OutputSpec(ask.name, ask.class_count) for ask in self.asked]

    def named(self, form: Form, names: Sequence[str]) -> frozenset[str]:
        """Which of the result's output ``names`` are answered as ``form``."""
        if self.asked is None:
            return frozenset(names if self.form == form else ())
        return frozenset(ask.name for ask in self.asked if ask.form == form)


@dataclass(frozen=True, slots=True)
class Tensors:
    """A tensor body read against its model: the inputs as declared (checked before they are decoded), how
    to decode them, the answer asked for, the parameters Triton acts on, and the request id."""

    inputs: Sequence[TensorSpec]
    decode: Callable[[], list[Tensor]]
    answer: Answer
    parameters: Mapping[str, Any]
    id: str


class InferenceRequest:
    """A tensor inference request: the model now, the body when the data plane has that model's info.
    ``size``: the body's bytes, which tell the data plane where reading it is worth running."""

    __slots__ = ("_read", "_tensors", "model", "size")

    def __init__(self, model: ModelRef, read: Callable[[ModelInfo], Tensors], size: int = 0) -> None:
        self.model = model
        self.size = size
        self._read = read
        self._tensors: Tensors | None = None

    def tensors(self, info: ModelInfo) -> Tensors:
        """The body read against the model (once); 400/413 naming the field when it does not fit."""
        if self._tensors is None:
            self._tensors = self._read(info)
        return self._tensors

    @property
    def answer(self) -> Answer:
        """How each output is answered (known once the body is read)."""
        return self._tensors.answer if self._tensors is not None else Answer()


@dataclass(frozen=True, slots=True)
class Images:
    """Encoded image files (bytes, or base64 text from JSON), each with the field that names it in errors
    (``image``, ``images[0]``...)."""

    uploads: Sequence[tuple[str, bytes | str]]
    top_k: int | None = None
    id: str = ""


class ImageRequest:
    """An image inference request: the model now, the images once the model is known to be served.
    ``size``: the body's bytes."""

    __slots__ = ("_images", "_read", "model", "size")

    def __init__(self, model: ModelRef, read: Callable[[], Images], size: int = 0) -> None:
        self.model = model
        self.size = size
        self._read = read
        self._images: Images | None = None

    @property
    def answer(self) -> Answer:
        """Images are answered per image (``top_k`` or their outputs), whatever this says."""
        return Answer()

    def images(self) -> Images:
        """The images (read once); 400 naming the field when they cannot be."""
        if self._images is None:
            self._images = self._read()
        return self._images


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What an image inference gives back: one result per Triton call; ``batched`` when each holds a batch
    of images; ``classified`` names the output Triton classified (``top_k``), else None."""

    results: list[InferResult]
    batched: bool
    classified: str | None
