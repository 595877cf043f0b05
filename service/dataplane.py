"""The one inference pipeline every transport calls (KServe's ``dataplane.py``, MLServer's ``DataPlane``).

A transport decodes its body into an :class:`InferenceRequest` (or :class:`ImageRequest`), awaits
:meth:`DataPlane.infer`, and encodes the result with ``request.answer``. In between, top to bottom:

    resolve the model (allow-list, then Triton: 404 first, whatever else is wrong)
      -> read the request against the model's metadata (limits, names, datatypes, shapes)
      -> tensors -> Triton -> result

It knows neither FastAPI nor a wire format. Triton's client is awaited (``service.triton``: an asyncio
channel under uvicorn, inline under Lambda), so no thread is held per call in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, TypeVar, overload

from service import observability
from service.errors import ModelNotFound
from service.images import call_inputs, check_image_count, decode_base64, image_input, load_image
from service.protocol.checks import check_inputs
from service.protocol.classification import classification_output
from service.protocol.metadata import ModelInfo
from service.protocol.model_ref import check_model_name, check_version
from service.protocol.request import ImageRequest, ImageResult, InferenceRequest, Limits, ModelRef, Tensors
from service.protocol.tensors import Array, InferResult, OutputSpec, Tensor
from service.settings import Settings
from service.triton import Deadline, TritonClient
from service.triton.inline import calls_inline

T = TypeVar("T")
# Threads for a big body's CPU work under uvicorn (anyio's default limit, which Starlette's pool had).
_THREADS = 40
# A body up to this size is read and decoded on the loop itself: a thread hop costs more than the work.
_INLINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Model:
    """A resolved model: the name and version asked for ("" lets Triton's policy choose), and its info."""

    name: str
    version: str
    info: ModelInfo


class DataPlane:
    """Models and inference for one request's settings and Triton client."""

    def __init__(self, settings: Settings, triton: TritonClient) -> None:
        self.settings = settings
        self.triton = triton
        self.limits = Limits.of(settings)

    # -- models ----------------------------------------------------------------------------------------------

    async def model(self, ref: ModelRef, deadline: Deadline) -> Model:
        """The model to run (the default for an empty name), if allowed and Triton has it; else 404."""
        name, version = ref.name or self.settings.default_model, ref.version
        await self._check_ref(name, version, deadline)
        info = await self.triton.model_info(name, version, deadline)
        observability.note_model(name, version)
        return Model(name, version, info)

    async def model_ready(self, name: str, version: str, deadline: Deadline) -> bool:
        """Whether Triton can run an allowed model (an unknown one is not ready, as Triton answers)."""
        await self._check_ref(name, version, deadline)
        return await self.triton.model_ready(name, version, deadline)

    async def statistics(self, name: str, version: str, deadline: Deadline) -> dict[str, Any]:
        """Triton's statistics of an allowed model; of every allowed model when ``name`` is empty."""
        if name:
            await self._check_ref(name, version, deadline)
            return await self.triton.statistics(name, version, deadline)
        stats = await self.triton.statistics("", "", deadline)
        stats["model_stats"] = [
            s for s in stats.get("model_stats", []) if self.settings.model_allowed(s["name"])
        ]
        return stats

    async def server_metadata(self, deadline: Deadline) -> dict[str, Any]:
        """Triton's name, version and protocol extensions."""
        return await self.triton.server_metadata(deadline)

    async def _check_ref(self, name: str, version: str, deadline: Deadline) -> None:
        """404 for a name Triton could not serve or one off the allow-list (callers cannot map the list);
        then 400 for a version that is not canonical, but only of a model Triton has: an unknown model is
        404 whatever its version says."""
        check_model_name(name)
        if not self.settings.model_allowed(name):
            raise ModelNotFound(f"model {name!r} is not served here")
        if not check_version(version):
            await self.triton.model_info(name, "", deadline)  # 404 when Triton lacks it
            check_version(version, strict=True)

    # -- inference -------------------------------------------------------------------------------------------

    @overload
    async def infer(self, request: InferenceRequest, deadline: Deadline) -> InferResult: ...
    @overload
    async def infer(self, request: ImageRequest, deadline: Deadline) -> ImageResult: ...
    async def infer(
        self, request: InferenceRequest | ImageRequest, deadline: Deadline
    ) -> InferResult | ImageResult:
        """Run a request: its model first (404), then its body against the model, then Triton."""
        if isinstance(request, ImageRequest):
            return await self._infer_images(request, deadline)
        model = await self.model(request.model, deadline)
        tensors, arrays, outputs = await self.offload(lambda: _prepare(request, model.info), request.size)
        return await self.triton.infer(
            model.name,
            model.version,
            arrays,
            outputs,
            deadline,
            tensors.id,
            tensors.parameters,
        )

    async def _infer_images(self, request: ImageRequest, deadline: Deadline) -> ImageResult:
        """Images preprocessed to the model's image input and run, batched as the model allows."""
        model = await self.model(request.model, deadline)
        images = request.images()
        check_image_count(len(images.uploads), self.settings.max_images)
        target = image_input(model.info, self.settings.image_scaling)
        if images.top_k is not None:
            outputs = [classification_output(model.info, images.top_k)]
        else:
            outputs = [OutputSpec(output.name) for output in model.info.metadata.outputs]
        max_pixels = self.settings.max_image_pixels

        def decode() -> list[Array]:
            with observability.stage("decode images"):
                return [
                    load_image(_image_bytes(data, field), target, field, max_pixels)
                    for field, data in images.uploads
                ]

        arrays = await self.offload(decode, request.size)
        observability.note_images(len(arrays))
        results = await self._run(model, call_inputs(arrays, target), outputs, deadline, images.id)
        classified = outputs[0].name if images.top_k is not None else None
        return ImageResult(results, target.max_batch_size > 0, classified)

    async def _run(
        self,
        model: Model,
        calls: Sequence[Sequence[Tensor]],
        outputs: Sequence[OutputSpec],
        deadline: Deadline,
        request_id: str,
    ) -> list[InferResult]:
        """One Triton call per entry of ``calls`` (concurrent when several), results in order."""
        if len(calls) == 1:
            result = await self.triton.infer(
                model.name, model.version, calls[0], outputs, deadline, request_id, None
            )
            return [result]
        return await self.triton.infer_many(model.name, model.version, calls, outputs, deadline, request_id)

    # -- where work runs -------------------------------------------------------------------------------------

    async def offload(self, work: Callable[[], T], size: int) -> T:
        """CPU work for a body of ``size`` bytes (reading, decoding): on the loop when the body is small or
        under Lambda (one event at a time, its calls inline: a hop would start a thread for nothing); under
        uvicorn, a big one's off the loop, so it does not stall the other requests."""
        if calls_inline() or size <= _INLINE_BYTES:
            return work()
        # The loop's executor, in a copy of the request's context (its id, its observation).
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_executor(), partial(context.run, work))


def _prepare(request: InferenceRequest, info: ModelInfo) -> tuple[Tensors, list[Tensor], list[OutputSpec]]:
    """The request's body read against the model, checked, its tensors decoded, its outputs chosen."""
    tensors = request.tensors(info)
    # Names, datatypes and shapes first: a mismatch is the clearer message than the byte count it causes.
    check_inputs(tensors.inputs, info)
    with observability.stage("decode tensors"):
        arrays = tensors.decode()
    return tensors, arrays, tensors.answer.specs(info)


def _image_bytes(data: bytes | str, field: str) -> bytes:
    return decode_base64(data, field) if isinstance(data, str) else data


@cache
def _executor() -> ThreadPoolExecutor:
    # Created on first use, never at import: a cold start answering /health starts no threads.
    return ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="plane")
