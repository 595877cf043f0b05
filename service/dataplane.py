"""The one inference pipeline every transport calls (KServe's ``dataplane.py``, MLServer's ``DataPlane``):

    model lookup (allow-list, then Triton's metadata and config)
      -> the transport parses its body (a callable, so an unknown model is 404 whatever the body holds)
      -> validation against the model (``protocol.checks``) -> decode -> Triton call(s) -> result

It knows neither FastAPI nor a wire format: ``/infer`` (JSON tensors, images) and ``/v2`` (JSON, binary)
hand it a parsed request (:class:`TensorRequest`, or :class:`ImageRequest`) and encode the outcome.

Seams for what comes next:
- Observability: :meth:`DataPlane.model` names the request's model, the decode stages are trace
  subsegments and images are counted here; the Triton client times, counts and traces each of its calls
  (``service.observability``).
- Hardening: "does the request fit the model" is ``service.protocol.checks`` (called once, in
  :meth:`infer_tensors`, before decoding); model-name and version rules belong in :meth:`DataPlane.model`.
- The Triton client (channel, retries, deadlines) stays in ``service.triton``; this module only calls it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from service import observability
from service.errors import ModelNotFound
from service.images import call_inputs, image_input, load_image
from service.protocol.checks import TensorSpec, check_inputs
from service.protocol.classification import classification_output
from service.protocol.metadata import ModelInfo
from service.protocol.model_ref import check_model_ref
from service.protocol.tensors import InferResult, OutputSpec, Tensor
from service.settings import Settings
from service.triton import Deadline, TritonClient


class TensorRequest(Protocol):
    """A transport's parsed tensor request, its wire format hidden behind what the pipeline asks of it."""

    @property
    def request_id(self) -> str: ...
    @property
    def parameters(self) -> Mapping[str, Any]: ...
    @property
    def declared_inputs(self) -> Sequence[TensorSpec]: ...
    def decode(self) -> list[Tensor]: ...
    def outputs(self, info: ModelInfo) -> list[OutputSpec]: ...


R = TypeVar("R", bound=TensorRequest)
T = TypeVar("T")


class Offload(Protocol):
    """Where the transport wants a request's CPU work (parsing, decoding) run, when not on the loop
    itself (None: a small body, for which a thread hop costs more than the work)."""

    def __call__(self, work: Callable[[], T]) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Encoded image files, each with the field that names it in errors (``image``, ``images[0]``...)."""

    uploads: Sequence[tuple[str, bytes]]
    top_k: int | None = None
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Model:
    """A resolved model: the name and version asked for ("" lets Triton's policy choose), and its info."""

    name: str
    version: str
    info: ModelInfo


@dataclass(frozen=True, slots=True)
class TensorOutcome(Generic[R]):
    """What a tensor inference gives back: the model, the parsed request (for its encoding), the result."""

    model: Model
    request: R
    result: InferResult


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """What an image inference gives back: one result per Triton call; ``batched`` when each holds a batch
    of images; ``classified`` names the output Triton classified (``top_k``), else None."""

    model: Model
    results: list[InferResult]
    batched: bool
    classified: str | None


class DataPlane:
    """Models and inference for one request's settings and Triton client."""

    def __init__(self, settings: Settings, triton: TritonClient) -> None:
        self.settings = settings
        self.triton = triton

    # -- models ----------------------------------------------------------------------------------------------

    def ensure_allowed(self, name: str, version: str = "") -> None:
        """400 for a name or version Triton could not serve (before any Triton call, so each version has
        one spelling and one cache entry); 404 for a model off the allow-list, as for one Triton lacks:
        callers cannot map the list."""
        check_model_ref(name, version)
        if not self.settings.model_allowed(name):
            raise ModelNotFound(f"model {name!r} is not served here")

    async def model(self, name: str | None, version: str | None, deadline: Deadline) -> Model:
        """The model to run (the default when ``name`` is empty), if allowed and Triton has it; else 404."""
        model, at = name or self.settings.default_model, version or ""
        self.ensure_allowed(model, at)
        info = await self.triton.model_info(model, at, deadline)
        observability.note_model(model, at)
        return Model(model, at, info)

    async def model_ready(self, name: str, version: str, deadline: Deadline) -> bool:
        """Whether Triton can run an allowed model (an unknown one is not ready, as Triton answers)."""
        self.ensure_allowed(name, version)
        return await self.triton.model_ready(name, version, deadline)

    async def statistics(self, name: str, version: str, deadline: Deadline) -> dict[str, Any]:
        """Triton's statistics of an allowed model; of every allowed model when ``name`` is empty."""
        if name:
            self.ensure_allowed(name, version)
            return await self.triton.statistics(name, version, deadline)
        stats = await self.triton.statistics("", "", deadline)
        stats["model_stats"] = [
            s for s in stats.get("model_stats", []) if self.settings.model_allowed(s["name"])
        ]
        return stats

    # -- inference -------------------------------------------------------------------------------------------

    async def infer_tensors(
        self,
        name: str | None,
        version: str | None,
        parse: Callable[[], R],
        deadline: Deadline,
        precheck: Callable[[ModelInfo], None] | None = None,
        offload: Offload | None = None,
    ) -> TensorOutcome[R]:
        """The caller's tensors run on the model: resolve it, parse, check, decode, run. ``precheck`` judges
        the unparsed body against the model first, so a body the model refuses is never materialised;
        ``offload`` runs that CPU work where the transport wants it."""
        model = await self.model(name, version, deadline)

        def prepare() -> tuple[R, list[Tensor], list[OutputSpec]]:
            if precheck is not None:
                precheck(model.info)
            request = parse()
            # Names, datatypes and shapes first: a mismatch is the clearer message than the byte count.
            check_inputs(request.declared_inputs, model.info)
            with observability.stage("decode tensors"):
                tensors = request.decode()
            return request, tensors, request.outputs(model.info)

        request, tensors, outputs = await offload(prepare) if offload else prepare()
        [result] = await self.run(model, [tensors], outputs, deadline, request.request_id, request.parameters)
        return TensorOutcome(model, request, result)

    async def infer_images(
        self,
        name: str | None,
        version: str | None,
        parse: Callable[[], ImageRequest],
        deadline: Deadline,
        offload: Offload | None = None,
    ) -> ImageOutcome:
        """Images preprocessed to the model's image input and run, batched as the model allows."""
        model = await self.model(name, version, deadline)
        request = parse()
        target = image_input(model.info, self.settings.image_scaling)
        if request.top_k is not None:
            outputs = [classification_output(model.info, request.top_k)]
        else:
            outputs = [OutputSpec(output.name) for output in model.info.metadata.outputs]
        max_pixels = self.settings.max_image_pixels

        def decode() -> list[Any]:
            with observability.stage("decode images"):
                return [load_image(data, target, field, max_pixels) for field, data in request.uploads]

        arrays = await offload(decode) if offload else decode()
        observability.note_images(len(arrays))
        results = await self.run(model, call_inputs(arrays, target), outputs, deadline, request.request_id)
        classified = outputs[0].name if request.top_k is not None else None
        return ImageOutcome(model, results, target.max_batch_size > 0, classified)

    async def run(
        self,
        model: Model,
        calls: Sequence[Sequence[Tensor]],
        outputs: Sequence[OutputSpec],
        deadline: Deadline,
        request_id: str = "",
        parameters: Mapping[str, Any] | None = None,
    ) -> list[InferResult]:
        """The one place inferences reach Triton: one call per entry of ``calls`` (concurrent when several),
        results in order."""
        if len(calls) == 1:
            return [
                await self.triton.infer(
                    model.name, model.version, calls[0], outputs, deadline, request_id, parameters
                )
            ]
        return await self.triton.infer_many(model.name, model.version, calls, outputs, deadline, request_id)
