"""Triton's generate extension: ``POST /v2/models/{model}[/versions/{version}]/generate`` answers one JSON
object, ``/generate_stream`` one server-sent event per response of the model, as Triton's HTTP frontend
does, here over gRPC (a decoupled model through ``ModelStreamInfer``, any other through ``ModelInfer``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from service.dataplane import DataPlane, Model
from service.errors import BadRequest
from service.generation import Generation
from service.protocol.generate import (
    GenerateRequest,
    decode_generate,
    encode_generate,
    parse_object,
    sse_event,
)
from service.routes.common import (
    ERROR_RESPONSES,
    api_key,
    json_response,
    read_body,
    request_deadline,
)
from service.routes.sse import error_message, event_stream
from service.settings import Settings
from service.triton import get_client
from service.triton.stream import Generated, get_stream_client

router = APIRouter(prefix="/v2", tags=["generate"], dependencies=[Depends(api_key)])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    }
}
# The stream's errors before its first event are generate's (404, 413, 503 with Retry-After, 504...), as
# JSON; after it, an event {"error": "..."}.
_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {"description": "One `data: {...}` event per response", "content": {"text/event-stream": {}}},
}


async def _decode(request: Request, model: str) -> tuple[Generation, Model, GenerateRequest]:
    settings: Settings = request.app.state.settings
    version = str(request.path_params.get("version", ""))
    plane = DataPlane(settings, get_client(settings))
    resolved = await plane.model(model, version, request_deadline(request, settings))
    body = await read_body(request, settings)
    generate = decode_generate(parse_object(body), resolved.info)
    return Generation(settings, get_stream_client(settings)), resolved, generate


def _encode(response: Generated) -> dict[str, Any]:
    return encode_generate(response.model_name, response.model_version, response.outputs)


async def generate(request: Request, model: str) -> Response:
    """The model's one response as a JSON object: each output by name (one element as a scalar)."""
    generation, resolved, body = await _decode(request, model)
    answers = [_encode(response) async for response in generation.responses(resolved, body)]
    if len(answers) != 1:
        # Triton's own words for a model that answered with a stream.
        raise BadRequest(
            f"generate expects model to produce exactly 1 response, got {len(answers)}: use generate_stream "
            "for a model that generates a varying number of responses"
        )
    return json_response(answers[0])


async def generate_stream(request: Request, model: str) -> Response:
    """One server-sent event (``data: {...}``) per response of the model, as it is produced; an error
    after the first is an event ``data: {"error": "..."}``."""
    generation, resolved, body = await _decode(request, model)
    return await event_stream(
        generation.responses(resolved, body),
        lambda response: sse_event(_encode(response)),
        lambda exc: sse_event({"error": error_message(exc)}),
    )


async def _versioned(version: Annotated[str, Path(description="model version, e.g. 1")]) -> None:
    """Declares the path's ``{version}`` for OpenAPI."""


for _prefix, _dependencies in (
    ("/models/{model}", []),
    ("/models/{model}/versions/{version}", [Depends(_versioned)]),
):
    router.add_api_route(
        f"{_prefix}/generate",
        generate,
        methods=["POST"],
        dependencies=_dependencies,
        summary="Generate (one response)",
        responses=ERROR_RESPONSES,
        openapi_extra=_BODY,
    )
    router.add_api_route(
        f"{_prefix}/generate_stream",
        generate_stream,
        methods=["POST"],
        dependencies=_dependencies,
        summary="Generate, streamed as server-sent events",
        responses=_STREAM_RESPONSES,
        openapi_extra=_BODY,
    )
