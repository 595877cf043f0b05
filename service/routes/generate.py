"""Triton's generate extension: ``POST /v2/models/{model}[/versions/{version}]/generate`` answers one JSON
object, ``/generate_stream`` one server-sent event per response of the model, as Triton's HTTP frontend
does, here over gRPC (a decoupled model through ``ModelStreamInfer``, any other through ``ModelInfer``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.errors import BadRequest
from service.routes.common import (
    ERROR_RESPONSES,
    MODEL_PREFIXES,
    api_key,
    json_response,
    read_body,
    request_deadline,
)
from service.routes.plane import plane_of
from service.routes.sse import error_message, event_stream
from service.settings import Settings

if TYPE_CHECKING:
    from service.dataplane import Model
    from service.generation import Generation
    from service.protocol.generate import GenerateRequest
    from service.triton.stream import Generated

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


async def _decode(request: Request) -> tuple[Generation, Model, GenerateRequest]:
    # The pipeline is imported on first use: a cold start answering /health never loads it.
    from service.generation import Generation
    from service.protocol.generate import decode_generate, parse_object
    from service.protocol.request import ModelRef
    from service.triton.stream import get_stream_client

    settings: Settings = request.app.state.settings
    # The path read here and declared in OpenAPI (below): a typed path parameter makes FastAPI build a field
    # at import, which imports pydantic.v1 (to refuse one) at a cold start.
    model, version = str(request.path_params["model"]), str(request.path_params.get("version", ""))
    resolved = await plane_of(request).model(ModelRef(model, version), request_deadline(request, settings))
    body = await read_body(request, settings)
    generate = decode_generate(parse_object(body), resolved.info)
    return Generation(settings, get_stream_client(settings)), resolved, generate


def _encode(response: Generated) -> dict[str, Any]:
    from service.protocol.generate import encode_generate

    return encode_generate(response.model_name, response.model_version, response.outputs)


async def generate(request: Request) -> Response:
    """The model's one response as a JSON object: each output by name (one element as a scalar)."""
    generation, resolved, body = await _decode(request)
    answers = [_encode(response) async for response in generation.responses(resolved, body)]
    if len(answers) != 1:
        # Triton's own words for a model that answered with a stream.
        raise BadRequest(
            f"generate expects model to produce exactly 1 response, got {len(answers)}: use generate_stream "
            "for a model that generates a varying number of responses"
        )
    return json_response(answers[0])


async def generate_stream(request: Request) -> Response:
    """One server-sent event (``data: {...}``) per response of the model, as it is produced; an error
    after the first is an event ``data: {"error": "..."}``."""
    from service.protocol.generate import sse_event

    generation, resolved, body = await _decode(request)
    return await event_stream(
        generation.responses(resolved, body),
        lambda response: sse_event(_encode(response)),
        lambda exc: sse_event({"error": error_message(exc)}),
    )


for _prefix, _parameters in MODEL_PREFIXES:
    router.add_api_route(
        f"{_prefix}/generate",
        generate,
        methods=["POST"],
        summary="Generate (one response)",
        responses=ERROR_RESPONSES,
        openapi_extra={**_BODY, "parameters": _parameters},
    )
    router.add_api_route(
        f"{_prefix}/generate_stream",
        generate_stream,
        methods=["POST"],
        summary="Generate, streamed as server-sent events",
        responses=_STREAM_RESPONSES,
        openapi_extra={**_BODY, "parameters": _parameters},
    )
