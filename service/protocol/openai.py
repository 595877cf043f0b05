"""OpenAI's completions and chat completions on the wire: the request bodies (with OpenAI's own limits and
error shape), the model input contract they are turned into (vLLM's or TensorRT-LLM's ensemble, chosen
from the model's metadata), and the answers and stream chunks."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.errors import BadRequest, GatewayError, ModelNotFound
from service.protocol.metadata import ModelInfo

Contract = Literal["vllm", "trtllm"]


class InvalidParam(BadRequest):
    """A /v1 request parameter OpenAI's API would refuse; ``param`` names it."""

    def __init__(self, message: str, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class UnknownModel(ModelNotFound):
    """404 for a /v1 request's ``model`` that is not served here, in OpenAI's words."""

    param = "model"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist or is not served here")


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """Every /v1 error: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class _Sampling(BaseModel):
    """What both endpoints take: OpenAI's sampling parameters (n=1 only) and the stream switch."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Accepted and ignored, as a deterministic backend may: they change no answer's shape.
    user: str | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or not all(stops):
            raise ValueError("up to 4 non-empty sequences")
        return stops


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    echo: Literal[False] = False
    logprobs: None = None
    best_of: Literal[1] | None = None
    suffix: None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("one prompt per request")
            return value[0]
        return value


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text (its text parts joined)."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: Literal[False] | None = None


def parse_request(model: type[_Sampling], body: bytes) -> Any:
    """The body as ``model``, or :class:`InvalidParam` naming the first bad parameter."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        param = ".".join(str(part) for part in error["loc"] if _is_field(part)) or None
        if error["type"] == "extra_forbidden":
            raise InvalidParam(f"Unrecognized request argument supplied: {param}", param) from None
        if error["type"] == "json_invalid":
            raise InvalidParam(f"body is not valid JSON: {error['msg']}", None) from None
        if param == "n":
            raise InvalidParam("n: only n=1 is supported", "n") from None
        raise InvalidParam(f"{param}: {error['msg']}" if param else error["msg"], param) from None


# The tags pydantic puts in an error's location for the member of a union it tried: not field names.
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict"})


def _is_field(part: str | int) -> bool:
    return isinstance(part, int) or not ("[" in part or "-" in part or part in _UNION_TAGS)


def error_body(exc: GatewayError, message: str) -> dict[str, Any]:
    """OpenAI's error object for ``exc`` (``message`` is what the caller may be told)."""
    param = getattr(exc, "param", None)
    code = getattr(exc, "code", None)
    if exc.status == 404:
        kind, code, param = "invalid_request_error", code or "model_not_found", param or "model"
    elif exc.status < 500:
        kind = "invalid_request_error"
        if param is None and ":" in message:
            head = message.split(":", 1)[0]
            param = head if head and " " not in head else None
    else:
        kind = "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# -- the model's input contract ---------------------------------------------------------------------------


def contract(info: ModelInfo) -> Contract:
    """Which input contract the model speaks, from its inputs; 400 (param ``model``) for neither."""
    names = {tensor.name for tensor in info.metadata.inputs}
    if "text_input" in names and "sampling_parameters" in names:
        return "vllm"
    if "text_input" in names and "max_tokens" in names:
        return "trtllm"
    raise InvalidParam(
        f"model {info.metadata.name!r} takes neither vLLM's inputs (text_input, sampling_parameters) nor "
        "TensorRT-LLM's (text_input, max_tokens)",
        "model",
    )


@dataclass(frozen=True, slots=True)
class Sampling:
    """The sampling a request settled on (max_tokens capped and defaulted)."""

    max_tokens: int
    temperature: float | None
    top_p: float | None
    stop: list[str]


def model_inputs(info: ModelInfo, prompt: str, sampling: Sampling, stream: bool) -> dict[str, Any]:
    """The generate fields (input name -> value) that ask the model for ``prompt``'s completion."""
    declared = {tensor.name for tensor in info.metadata.inputs}
    fields: dict[str, Any] = {"text_input": prompt}
    if "stream" in declared:
        fields["stream"] = stream
    if contract(info) == "vllm":
        parameters: dict[str, Any] = {"max_tokens": sampling.max_tokens}
        if sampling.temperature is not None:
            parameters["temperature"] = sampling.temperature
        if sampling.top_p is not None:
            parameters["top_p"] = sampling.top_p
        if sampling.stop:
            parameters["stop"] = sampling.stop
        fields["sampling_parameters"] = orjson.dumps(parameters).decode()
        for name in ("exclude_input_in_output", *_COUNTS):
            if name in declared:
                fields[name] = True
        return fields
    fields["max_tokens"] = sampling.max_tokens
    if sampling.temperature is not None and "temperature" in declared:
        fields["temperature"] = sampling.temperature
    if sampling.top_p is not None and "top_p" in declared:
        fields["top_p"] = sampling.top_p
    if sampling.stop and "stop_words" in declared:
        fields["stop_words"] = sampling.stop
    return fields


# The vLLM backend's switches for the outputs that give usage and finish_reason.
_COUNTS = ("return_num_input_tokens", "return_num_output_tokens", "return_finish_reason")


# -- answers ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """What a generation gave so far: its text, token counts (when the model reports them), how it ended."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    def add(self, outputs: dict[str, Any]) -> str:
        """Take one response's outputs (name -> plain value); returns its text."""
        text = outputs.get("text_output", "")
        text = "".join(text) if isinstance(text, list) else str(text)
        self.text += text
        if "num_input_tokens" in outputs:
            self.prompt_tokens = int(outputs["num_input_tokens"])
        if "num_output_tokens" in outputs:
            self.completion_tokens = (self.completion_tokens or 0) + int(outputs["num_output_tokens"])
        reason = outputs.get("finish_reason")
        if reason:
            self.finish_reason = str(reason[0] if isinstance(reason, list) else reason)
        return text

    def usage(self) -> dict[str, int] | None:
        """OpenAI's usage, when the model reported both counts."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        total = self.prompt_tokens + self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": total,
        }


def new_id(prefix: str) -> str:
    """An id of OpenAI's form (``cmpl-...``, ``chatcmpl-...``)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def completion(answer_id: str, model: str, tally: Tally, chat: bool) -> dict[str, Any]:
    """The whole answer of a completion (``text_completion``) or a chat completion."""
    reason = tally.finish_reason or "stop"
    choice: dict[str, Any] = (
        {
            "index": 0,
            "message": {"role": "assistant", "content": tally.text},
            "finish_reason": reason,
            "logprobs": None,
        }
        if chat
        else {"index": 0, "text": tally.text, "finish_reason": reason, "logprobs": None}
    )
    answer: dict[str, Any] = {
        "id": answer_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    usage = tally.usage()
    if usage is not None:
        answer["usage"] = usage
    return answer


def chunk(
    answer_id: str,
    model: str,
    chat: bool,
    text: str | None,
    finish_reason: str | None = None,
    role: bool = False,
    usage: dict[str, int] | None = None,
) -> bytes:
    """One SSE chunk: a delta of ``text`` (None: no choice, only ``usage``), the role on a chat's first."""
    choices: list[dict[str, Any]] = []
    if text is not None:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if role else {"content": text}
            if finish_reason is not None and not text:
                delta = {}
            choices.append({"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None})
        else:
            choices.append({"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None})
    data: dict[str, Any] = {
        "id": answer_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        data["usage"] = usage
    return b"data: " + orjson.dumps(data) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def model_list(names: list[str], owner: str) -> dict[str, Any]:
    """``GET /v1/models``: every model the gateway serves."""
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": owner} for name in names],
    }
