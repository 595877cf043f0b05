"""The KServe v2 HTTP body -> :class:`InferenceRequest`, and the result -> the v2 answer. A body is JSON, or
(with ``Inference-Header-Content-Length``) a JSON header followed by binary sections, either one
gzip/deflate-compressed.

The model comes from the path; the body is inflated, split and read only once the data plane has resolved
that model, so an unknown model is 404 whatever the body holds. As an extension, an input may carry ``b64``
(base64 raw bytes) instead of ``data``, as on ``/infer``."""

from __future__ import annotations

from service.protocol.binary import (
    answer_of,
    decode_inputs,
    encode_response,
    forwarded_parameters,
    inflate,
    split_body,
)
from service.protocol.json_tensors import read_json_tensors
from service.protocol.metadata import ModelInfo
from service.protocol.request import Answer, InferenceRequest, Limits, ModelRef, Tensors
from service.protocol.schemas import V2InferRequest
from service.protocol.tensors import InferResult


def decode_v2(
    body: bytes,
    model: ModelRef,
    limits: Limits,
    header_length: str | None = None,
    content_encoding: str | None = None,
) -> InferenceRequest:
    """The request a v2 body makes of ``model`` (read against it when the data plane asks)."""

    def read(info: ModelInfo) -> Tensors:
        header, binary = split_body(inflate(body, content_encoding, limits.max_inflated_bytes), header_length)
        found = read_json_tensors(header, V2InferRequest, limits.element_limit).tensors(info)
        request = found.request
        return Tensors(
            inputs=request.inputs,
            decode=lambda: decode_inputs(request.inputs, binary, decode_json=found.decode_input),
            answer=answer_of(request),
            parameters=forwarded_parameters(request),
            id=request.id or "",
        )

    return InferenceRequest(model, read, len(body))


def encode_v2(result: InferResult, answer: Answer) -> tuple[bytes, int | None]:
    """The v2 answer's bytes, and its JSON header's length when binary outputs follow it."""
    return encode_response(result, answer)
