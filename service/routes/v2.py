"""The KServe v2 REST protocol, as Triton's HTTP endpoint speaks it (``tritonclient.http``, perf_analyzer):
health, server and model metadata, model config and statistics, and inference with JSON or binary tensors.

Triton's repository (load/unload), shared-memory, trace and logging APIs are deliberately absent. Request
bodies may be gzip/deflate (``Content-Encoding``); answers are never compressed, whatever ``Accept-Encoding``
says (identity is always acceptable): compression belongs to API Gateway's edge, and a compressed JSON answer
would also need a binary media type to pass through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.errors import NotReady
from service.protocol.headers import BINARY_MEDIA_TYPE, HEADER_LENGTH
from service.routes.common import (
    ERROR_RESPONSES,
    MODEL_PREFIXES,
    SECURITY,
    DeadlineDep,
    HealthDeadlineDep,
    RequestRoute,
    TritonDep,
    api_key,
    json_response,
    read_body,
    schema_ref,
)
from service.routes.plane import inference, plane_of

if TYPE_CHECKING:
    from service.protocol.request import ModelRef

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

router = APIRouter(prefix="/v2", tags=["kserve-v2"], route_class=RequestRoute)
# Every route but infer (which declares it in its OpenAPI, and reads its parameters itself) asks for the key.
_KEY = [Depends(api_key)]


def _answer(name: str) -> dict[int | str, dict[str, Any]]:
    # The answer's schema by reference: a response model would compile a validator at a cold start.
    ok = {"description": "Successful Response", "content": {"application/json": {"schema": schema_ref(name)}}}
    return {200: ok, **ERROR_RESPONSES}


_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Yes (empty body)"},
    400: ERROR_RESPONSES[400] | {"description": "No"},
    **{status: ERROR_RESPONSES[status] for status in (503, 504)},
}


def _model(request: Request) -> tuple[str, str]:
    # The routes read their path themselves and declare it in OpenAPI (below): a typed path parameter makes
    # FastAPI build a field for it at import, which imports pydantic.v1 (to refuse one) at a cold start.
    params = request.path_params
    return str(params["model"]), str(params.get("version", ""))


# -- the server ------------------------------------------------------------------------------------------
# Every route is a coroutine that awaits its Triton call: a plain function would run in FastAPI's thread
# pool, which under Mangum starts a new thread for every invocation (~0.6 ms and a thread per probe).


@router.get("", summary="Server metadata", responses=_answer("ServerMetadata"), dependencies=_KEY)
async def server_metadata(request: Request, deadline: DeadlineDep) -> Response:
    """Triton's name and version, and the protocol extensions served through this gateway."""
    from service.protocol.metadata import ServerMetadata

    metadata = await plane_of(request).server_metadata(deadline)
    extensions = [name for name in metadata.get("extensions", []) if name in SERVED_EXTENSIONS]
    return json_response(ServerMetadata(**{**metadata, "extensions": extensions}).model_dump())


@router.get("/health/live", summary="Is Triton live", responses=_HEALTH_RESPONSES, dependencies=_KEY)
async def server_live(request: Request, triton: TritonDep, deadline: HealthDeadlineDep) -> Response:
    """200 when Triton is live; 400 when it answers that it is not; 503/504 when it does not answer."""
    if not await triton.server_live(deadline):
        raise NotReady("Triton is not live")
    return Response(status_code=200)


@router.get("/health/ready", summary="Is Triton ready", responses=_HEALTH_RESPONSES, dependencies=_KEY)
async def server_ready(request: Request, triton: TritonDep, deadline: HealthDeadlineDep) -> Response:
    """200 when Triton is ready; 400 when it answers that it is not; 503/504 when it does not answer."""
    if not await triton.server_ready(deadline):
        raise NotReady("Triton is not ready")
    return Response(status_code=200)


@router.get(
    "/models/stats",
    summary="Inference statistics of every model",
    responses=ERROR_RESPONSES,
    dependencies=_KEY,
)
async def all_statistics(request: Request, deadline: DeadlineDep) -> Response:
    """Triton's statistics of each model served here (the allow-list's, when there is one)."""
    return json_response(await plane_of(request).statistics("", "", deadline))


# -- one model, at Triton's choice of version or at /versions/{version} ------------------------------------

# The model routes, each declared under /models/{model} and /models/{model}/versions/{version} (below).
_MODEL_ROUTES: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []


def _model_route(method: str, path: str, **options: Any) -> Callable[[E], E]:
    def declare(endpoint: E) -> E:
        _MODEL_ROUTES.append((method, path, endpoint, options))
        return endpoint

    return declare


@_model_route("GET", "", summary="Model metadata", responses=_answer("ModelMetadata"))
async def model_metadata(request: Request, deadline: DeadlineDep) -> Response:
    """The model's versions, platform, and inputs and outputs (``-1`` marks a free dimension)."""
    found = await plane_of(request).model(_ref(*_model(request)), deadline)
    return json_response(found.info.metadata.model_dump())


@_model_route(
    "GET", "/ready", summary="Is the model ready", responses=_HEALTH_RESPONSES | {404: ERROR_RESPONSES[404]}
)
async def model_ready(request: Request, deadline: HealthDeadlineDep) -> Response:
    """200 when Triton can run the model; 400 when it cannot (unknown to Triton, or not loaded)."""
    model, version = _model(request)
    if not await plane_of(request).model_ready(model, version, deadline):
        raise NotReady(f"model {model!r}{f' version {version!r}' if version else ''} is not ready")
    return Response(status_code=200)


@_model_route("GET", "/config", summary="Model configuration", responses=ERROR_RESPONSES)
async def model_config(request: Request, deadline: DeadlineDep) -> Response:
    """The model's configuration as Triton's HTTP API writes it (every field; 64-bit integers as numbers)."""
    found = await plane_of(request).model(_ref(*_model(request)), deadline)
    return json_response(found.info.config)


@_model_route("GET", "/stats", summary="Model inference statistics", responses=ERROR_RESPONSES)
async def model_statistics(request: Request, deadline: DeadlineDep) -> Response:
    """Triton's inference, batch and cache statistics of the model."""
    return json_response(await plane_of(request).statistics(*_model(request), deadline))


_INFER_OPENAPI: dict[str, Any] = {
    **SECURITY,
    "parameters": [
        {"name": HEADER_LENGTH, "in": "header", "required": False, "schema": {"type": "string"},
         "description": "length of the JSON header of a binary body"},
        {"name": "Content-Encoding", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "gzip or deflate, when compressed"},
    ],
    "requestBody": {
        "required": True,
        "description": (
            f"v2 JSON; or, with `{HEADER_LENGTH}: n`, n bytes of v2 JSON followed by the raw bytes of each "
            "input whose `parameters.binary_data_size` is set, in order (Triton's binary tensor extension). "
            "An input may also carry `b64` (base64 raw bytes) instead of `data`, as on /infer: an extension "
            "of this gateway, which Triton's own HTTP endpoint does not read."
        ),
        "content": {
            "application/json": {"schema": schema_ref("V2InferRequest")},
            BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    },
}  # fmt: skip


@_model_route(
    "POST",
    "/infer",
    summary="Run the model (v2 JSON or binary tensors)",
    responses=_answer("InferResponse")
    | {
        200: {
            "description": f"v2 JSON; with `{HEADER_LENGTH}` when outputs asked for binary data follow it",
            "content": {
                "application/json": {"schema": schema_ref("InferResponse")},
                BINARY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    openapi_extra=_INFER_OPENAPI,
)
async def infer(request: Request) -> Response:
    """Inputs as JSON `data` (flat or nested), `b64`, or binary sections; outputs as JSON `data` or, with
    `parameters.binary_data` (or the request's `binary_data_output`), binary sections; `classification: k`
    answers an output's top k as "score:index[:label]" strings."""
    from service.protocol.request import ModelRef
    from service.protocol.v2_http import decode_v2, encode_v2

    plane, deadline = inference(request)
    body = await read_body(request, plane.settings)
    model = ModelRef(*_model(request))
    headers = request.headers
    decoded = decode_v2(
        body, model, plane.limits, headers.get(HEADER_LENGTH), headers.get("content-encoding")
    )
    result = await plane.infer(decoded, deadline)
    content, json_length = encode_v2(result, decoded.answer)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type=BINARY_MEDIA_TYPE, headers={HEADER_LENGTH: str(json_length)})


def _ref(model: str, version: str) -> ModelRef:
    from service.protocol.request import ModelRef

    return ModelRef(model, version)


# Declared on the v2 router itself rather than as a router included twice: FastAPI matches an included
# router's routes twice per request (once to pick the router, once the route), ~0.1 ms on every request.
# Each model route is declared under both prefixes, its path parameters in its OpenAPI (it reads them itself).
for _prefix, _path_parameters in MODEL_PREFIXES:
    for _method, _path, _endpoint, _options in _MODEL_ROUTES:
        _extra = _options.get("openapi_extra", {})
        _parameters = [*_path_parameters, *_extra.get("parameters", [])]
        router.add_api_route(
            _prefix + _path,
            _endpoint,
            methods=[_method],
            # infer reads no key: API Gateway checks it, and infer's OpenAPI declares it.
            dependencies=[] if _endpoint is infer else _KEY,
            **{**_options, "openapi_extra": {**_extra, "parameters": _parameters}},
        )
