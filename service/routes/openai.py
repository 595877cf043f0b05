"""An OpenAI-compatible API over the gateway's text models: ``GET /v1/models``, ``POST /v1/completions`` and
``POST /v1/chat/completions``, whole or streamed (SSE chunks ending in ``data: [DONE]``). Every error on
``/v1`` is OpenAI's ``{"error": {"message", "type", "param", "code"}}``; the model's input contract
(vLLM's or TensorRT-LLM's ensemble) is read from its metadata (``protocol.openai``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.errors import GatewayError, ModelNotFound
from service.protocol.openai import (
    DONE,
    ChatRequest,
    CompletionRequest,
    InvalidParam,
    Sampling,
    Tally,
    UnknownModel,
    chunk,
    completion,
    error_body,
    model_inputs,
    model_list,
    new_id,
    parse_request,
)
from service.routes.common import api_key, json_response, read_body, request_deadline, schema_ref
from service.routes.plane import plane_of
from service.routes.sse import error_message, event_stream
from service.settings import Settings

if TYPE_CHECKING:
    from service.triton.stream import Generated

_STATUSES = {
    400: "A parameter OpenAI's API would refuse (``param`` names it)",
    404: "The model is not served here (``code`` model_not_found)",
    413: "The body is over the size limit",
    502: "Triton failed to run the request",
    503: "Triton is unavailable or overloaded (Retry-After), or the gateway runs MAX_STREAMS generations",
    504: "Triton, or the model, did not answer in time",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    # By reference, not as a model (which would import pydantic.v1 at a cold start); app.py lists it.
    status: {"description": text, "content": {"application/json": {"schema": schema_ref("ErrorEnvelope")}}}
    for status, text in _STATUSES.items()
}
router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(api_key)], responses=_ERRORS)

# OpenAI's own default for completions; a chat completion runs to MAX_TOKENS_LIMIT unless told.
_COMPLETION_MAX_TOKENS = 16
_OWNER = "triton"


def _openai_error(exc: GatewayError) -> Response:
    return json_response(error_body(exc, error_message(exc)), exc.status, exc.headers)


async def _answer(call: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await call()
    except GatewayError as exc:
        return _openai_error(exc)


def _body(model: type[Any]) -> dict[str, Any]:
    # Read by the route itself (OpenAI's error shape for every refusal), so documented as an object.
    schema = {"type": "object", "description": f"OpenAI's {model.__name__} body (see docs/generative.md)"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.get("/models", summary="Models served (OpenAI)")
async def list_models(request: Request) -> Response:
    """Every model Triton has ready that the allow-list lets through."""

    async def serve() -> Response:
        from service.triton.stream import get_stream_client

        settings: Settings = request.app.state.settings
        names = await get_stream_client(settings).ready_models(settings.triton_timeout_seconds)
        return json_response(model_list([n for n in names if settings.model_allowed(n)], _OWNER))

    return await _answer(serve)


@router.get(
    "/models/{model}",
    summary="One model (OpenAI)",
    openapi_extra={
        "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}]
    },
)
async def get_model(request: Request) -> Response:
    """The model, if it is served here (404 in OpenAI's shape otherwise)."""
    # The path read here: a typed path parameter makes FastAPI build a field at import (pydantic.v1).
    model = str(request.path_params["model"])

    async def serve() -> Response:
        from service.protocol.request import ModelRef

        settings: Settings = request.app.state.settings
        try:
            await plane_of(request).model(ModelRef(model), request_deadline(request, settings))
        except ModelNotFound:
            raise UnknownModel(model) from None
        return json_response({"id": model, "object": "model", "created": 0, "owned_by": _OWNER})

    return await _answer(serve)


@router.post("/completions", summary="Completions (OpenAI)", openapi_extra=_body(CompletionRequest))
async def completions(request: Request) -> Response:
    """Text completion of ``prompt``; ``stream: true`` answers SSE chunks and ``data: [DONE]``."""
    return await _answer(lambda: _complete(request, chat=False))


@router.post("/chat/completions", summary="Chat completions (OpenAI)", openapi_extra=_body(ChatRequest))
async def chat_completions(request: Request) -> Response:
    """The assistant's answer to ``messages``, prompted through the model's chat template."""
    return await _answer(lambda: _complete(request, chat=True))


async def _complete(request: Request, *, chat: bool) -> Response:
    # The pipeline (and Jinja, for chat templates) is imported on first use, never at a cold start.
    from service.chat_template import render
    from service.generation import Generation
    from service.protocol.generate import decode_generate, encode_generate
    from service.protocol.request import ModelRef
    from service.triton.stream import get_stream_client

    settings: Settings = request.app.state.settings
    body = await read_body(request, settings)
    parsed = parse_request(ChatRequest if chat else CompletionRequest, body)
    try:
        model = await plane_of(request).model(ModelRef(parsed.model), request_deadline(request, settings))
    except ModelNotFound:
        raise UnknownModel(parsed.model) from None
    sampling = _sampling(parsed, settings, chat)
    if chat:
        messages = [{"role": m.role, "content": m.text()} for m in parsed.messages]
        prompt = render(model.name, model.info.parameters, settings.chat_template_dir, messages)
    else:
        prompt = parsed.prompt
    if len(prompt.encode()) > settings.max_prompt_bytes:
        param = "messages" if chat else "prompt"
        raise InvalidParam(f"{param}: the prompt is over the {settings.max_prompt_bytes}-byte limit", param)
    generation = Generation(settings, get_stream_client(settings))
    fields = model_inputs(model.info, prompt, sampling, parsed.stream)
    responses = generation.responses(model, decode_generate(fields, model.info))
    answer_id, tally = new_id("chatcmpl" if chat else "cmpl"), Tally()

    def outputs(response: Generated) -> dict[str, Any]:
        return encode_generate(response.model_name, response.model_version, response.outputs)

    if not parsed.stream:
        async for response in responses:
            tally.add(outputs(response))
        return json_response(completion(answer_id, parsed.model, tally, chat))

    include_usage = parsed.stream_options is not None and parsed.stream_options.include_usage
    sent = [0]

    def encode(response: Generated) -> bytes:
        text = tally.add(outputs(response))
        sent[0] += 1
        return chunk(answer_id, parsed.model, chat, text, role=chat and sent[0] == 1)

    def done() -> bytes:
        last = chunk(
            answer_id, parsed.model, chat, "", tally.finish_reason or "stop", role=chat and not sent[0]
        )
        if include_usage:
            last += chunk(answer_id, parsed.model, chat, None, usage=tally.usage())
        return last + DONE

    return await event_stream(
        responses,
        encode,
        lambda exc: b"data: " + orjson.dumps(error_body(exc, error_message(exc))) + b"\n\n",
        done,
    )


def _sampling(parsed: CompletionRequest | ChatRequest, settings: Settings, chat: bool) -> Sampling:
    limit = settings.max_tokens_limit
    param, asked = "max_tokens", parsed.max_tokens
    if isinstance(parsed, ChatRequest) and parsed.max_completion_tokens is not None:
        param, asked = "max_completion_tokens", parsed.max_completion_tokens
    if asked is not None and asked > limit:
        raise InvalidParam(f"{param}: {asked} is over this gateway's limit of {limit} tokens", param)
    max_tokens = asked or (limit if chat else min(_COMPLETION_MAX_TOKENS, limit))
    stop = parsed.stop if isinstance(parsed.stop, list) else []
    return Sampling(max_tokens, parsed.temperature, parsed.top_p, stop)
