"""The KServe v2 REST protocol, as Triton's HTTP endpoint speaks it (``tritonclient.http``, perf_analyzer):
health, server and model metadata, model config and statistics, and inference with JSON or binary tensors.

Triton's repository (load/unload), shared-memory, trace and logging APIs are deliberately absent. Request
bodies may be gzip/deflate (``Content-Encoding``); answers are never compressed, whatever ``Accept-Encoding``
says (identity is always acceptable): compression belongs to API Gateway's edge, and a compressed JSON answer
would also need a binary media type to pass through it."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import Response

from service.dataplane import DataPlane
from service.errors import NotReady
from service.protocol.binary import (
    BINARY_MEDIA_TYPE,
    HEADER_LENGTH,
    V2Tensors,
    encode_response,
    fast_v2_tensors,
    inflate,
    split_body,
)
from service.protocol.metadata import ModelInfo, ModelMetadata, ServerMetadata
from service.protocol.prescan import check_against_model, guard
from service.protocol.schemas import InferResponse, V2InferRequest
from service.routes.common import (
    ERROR_RESPONSES,
    DeadlineDep,
    HealthDeadlineDep,
    OffLoop,
    TritonDep,
    api_key,
    cpu_offload,
    json_response,
    parse_json,
    raw_json_body,
    read_body,
)
from service.routes.lean import LeanRoute, lean
from service.routes.plane import Inference, InferenceDep, PlaneDep, request_inference
from service.triton import Deadline

E = TypeVar("E", bound=Callable[..., Any])

# The protocol extensions the gateway serves; GET /v2 lists those of Triton's that are among them.
SERVED_EXTENSIONS = frozenset(
    {
        "binary_tensor_data",
        "classification",
        "model_configuration",
        "parameters",
        "schedule_policy",
        "sequence",
        "statistics",
    }
)

router = APIRouter(prefix="/v2", tags=["kserve-v2"], dependencies=[Depends(api_key)], route_class=LeanRoute)

_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Yes (empty body)"},
    400: ERROR_RESPONSES[400] | {"description": "No"},
    **{status: ERROR_RESPONSES[status] for status in (503, 504)},
}


# Coroutines though they never wait: FastAPI runs a plain function dependency in its thread pool, a thread
# hop per request (under Mangum, a new thread per invocation: ~1 ms on the v2 infer route).
async def _version(request: Request) -> str:
    return str(request.path_params.get("version", ""))


Version = Annotated[str, Depends(_version)]


async def _versioned(version: Annotated[str, Path(description="model version, e.g. 2")]) -> None:
    """Declares the path's ``{version}`` for OpenAPI; the handlers read it through ``Version``."""


# -- the server ------------------------------------------------------------------------------------------
# Every route is a coroutine that awaits its Triton call: a plain function would run in FastAPI's thread
# pool, which under Mangum starts a new thread for every invocation (~0.6 ms and a thread per probe).


@router.get("", summary="Server metadata", response_model=ServerMetadata, responses=ERROR_RESPONSES)
async def server_metadata(request: Request, triton: TritonDep, deadline: DeadlineDep) -> Response:
    """Triton's name and version, and the protocol extensions served through this gateway."""
    metadata = await triton.server_metadata(deadline)
    extensions = [name for name in metadata.get("extensions", []) if name in SERVED_EXTENSIONS]
    return json_response(ServerMetadata(**{**metadata, "extensions": extensions}).model_dump())


@router.get("/health/live", summary="Is Triton live", responses=_HEALTH_RESPONSES)
async def server_live(request: Request, triton: TritonDep, deadline: HealthDeadlineDep) -> Response:
    """200 when Triton is live; 400 when it answers that it is not; 503/504 when it does not answer."""
    if not await triton.server_live(deadline):
        raise NotReady("Triton is not live")
    return Response(status_code=200)


@router.get("/health/ready", summary="Is Triton ready", responses=_HEALTH_RESPONSES)
async def server_ready(request: Request, triton: TritonDep, deadline: HealthDeadlineDep) -> Response:
    """200 when Triton is ready; 400 when it answers that it is not; 503/504 when it does not answer."""
    if not await triton.server_ready(deadline):
        raise NotReady("Triton is not ready")
    return Response(status_code=200)


@router.get("/models/stats", summary="Inference statistics of every model", responses=ERROR_RESPONSES)
async def all_statistics(request: Request, plane: PlaneDep, deadline: DeadlineDep) -> Response:
    """Triton's statistics of each model served here (the allow-list's, when there is one)."""
    return json_response(await plane.statistics("", "", deadline))


# -- one model, at Triton's choice of version or at /versions/{version} ------------------------------------

# The model routes, each declared under /models/{model} and /models/{model}/versions/{version} (below).
_MODEL_ROUTES: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []


def _model_route(method: str, path: str, **options: Any) -> Callable[[E], E]:
    def declare(endpoint: E) -> E:
        _MODEL_ROUTES.append((method, path, endpoint, options))
        return endpoint

    return declare


@_model_route("GET", "", summary="Model metadata", response_model=ModelMetadata, responses=ERROR_RESPONSES)
async def model_metadata(
    request: Request, model: str, version: Version, plane: PlaneDep, deadline: DeadlineDep
) -> Response:
    """The model's versions, platform, and inputs and outputs (``-1`` marks a free dimension)."""
    found = await plane.model(model, version, deadline)
    return json_response(found.info.metadata.model_dump())


@_model_route(
    "GET", "/ready", summary="Is the model ready", responses=_HEALTH_RESPONSES | {404: ERROR_RESPONSES[404]}
)
async def model_ready(
    request: Request, model: str, version: Version, plane: PlaneDep, deadline: HealthDeadlineDep
) -> Response:
    """200 when Triton can run the model; 400 when it cannot (unknown to Triton, or not loaded)."""
    if not await plane.model_ready(model, version, deadline):
        raise NotReady(f"model {model!r}{f' version {version!r}' if version else ''} is not ready")
    return Response(status_code=200)


@_model_route("GET", "/config", summary="Model configuration", responses=ERROR_RESPONSES)
async def model_config(
    request: Request, model: str, version: Version, plane: PlaneDep, deadline: DeadlineDep
) -> Response:
    """The model's configuration as Triton's HTTP API writes it (every field; 64-bit integers as numbers)."""
    found = await plane.model(model, version, deadline)
    return json_response(found.info.config)


@_model_route("GET", "/stats", summary="Model inference statistics", responses=ERROR_RESPONSES)
async def model_statistics(
    request: Request, model: str, version: Version, plane: PlaneDep, deadline: DeadlineDep
) -> Response:
    """Triton's inference, batch and cache statistics of the model."""
    return json_response(await plane.statistics(model, version, deadline))


_INFER_BODY = raw_json_body(V2InferRequest)
_INFER_BODY["requestBody"]["description"] = (
    f"v2 JSON; or, with `{HEADER_LENGTH}: n`, n bytes of v2 JSON followed by the raw bytes of each input "
    "whose `parameters.binary_data_size` is set, in order (Triton's binary tensor extension)."
)
_INFER_BODY["requestBody"]["content"][BINARY_MEDIA_TYPE] = {"schema": {"type": "string", "format": "binary"}}


async def _lean_infer(request: Request) -> Response:
    # infer()'s parameters read straight from the request: none of them is validated (strings, or absent).
    params, headers = request.path_params, request.headers
    return await _serve(
        request,
        request_inference(request),
        params["model"],
        str(params.get("version", "")),
        headers.get(HEADER_LENGTH),
        headers.get("content-encoding"),
    )


@_model_route(
    "POST",
    "/infer",
    summary="Run the model (v2 JSON or binary tensors)",
    response_model=InferResponse,
    responses=ERROR_RESPONSES
    | {
        200: {
            "description": f"v2 JSON; with `{HEADER_LENGTH}` when outputs asked for binary data follow it",
            "content": {BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    openapi_extra=_INFER_BODY,
)
@lean(_lean_infer)
async def infer(
    request: Request,
    model: str,
    version: Version,
    inference: InferenceDep,
    header_length: Annotated[
        str | None, Header(alias=HEADER_LENGTH, description="length of the JSON header of a binary body")
    ] = None,
    content_encoding: Annotated[
        str | None, Header(alias="Content-Encoding", description="gzip or deflate, when compressed")
    ] = None,
) -> Response:
    """Inputs as JSON `data` (flat or nested), `b64`, or binary sections; outputs as JSON `data` or, with
    `parameters.binary_data` (or the request's `binary_data_output`), binary sections; `classification: k`
    answers an output's top k as "score:index[:label]" strings."""
    return await _serve(request, inference, model, version, header_length, content_encoding)


async def _serve(
    request: Request,
    inference: Inference,
    model: str,
    version: str,
    header_length: str | None,
    content_encoding: str | None,
) -> Response:
    plane, deadline = inference.plane, inference.deadline
    body = await read_body(request, plane.settings)
    # The Triton call is awaited; inflating and decoding a big body run off the event loop.
    offload = cpu_offload(request, body)
    return await _infer(body, header_length, content_encoding, model, version, plane, deadline, offload)


async def _infer(
    body: bytes,
    header_length: str | None,
    content_encoding: str | None,
    model: str,
    version: str,
    plane: DataPlane,
    deadline: Deadline,
    offload: OffLoop | None,
) -> Response:
    @cache
    def sections() -> tuple[bytes, memoryview]:
        return split_body(inflate(body, content_encoding, plane.settings.max_inflated_bytes), header_length)

    @cache
    def fast() -> V2Tensors | None:
        header, binary = sections()
        return fast_v2_tensors(header, binary, plane.settings.element_limit)

    def precheck(info: ModelInfo) -> None:
        # The SIMD fast path reads a well-formed header once, within the guard's limits. Anything else has
        # its counts and shapes checked against the model before it is parsed: a gzip bomb costs no memory.
        if fast() is None:
            check_against_model(guard(sections()[0], plane.settings.element_limit), info)

    def parse() -> V2Tensors:
        # Anything the fast path would not read is parsed (and explained) precisely.
        return fast() or V2Tensors(parse_json(V2InferRequest, sections()[0]), sections()[1])

    ran = await plane.infer_tensors(model, version, parse, deadline, precheck, offload)
    content, json_length = encode_response(ran.result, ran.request.binary_outputs)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type=BINARY_MEDIA_TYPE, headers={HEADER_LENGTH: str(json_length)})


# Declared on the v2 router itself rather than as a router included twice: FastAPI matches an included
# router's routes twice per request (once to pick the router, once the route), ~0.1 ms on every request.
for _prefix, _dependencies in (
    ("/models/{model}", []),
    ("/models/{model}/versions/{version}", [Depends(_versioned)]),
):
    for _method, _path, _endpoint, _options in _MODEL_ROUTES:
        router.add_api_route(
            _prefix + _path, _endpoint, methods=[_method], dependencies=_dependencies, **_options
        )
