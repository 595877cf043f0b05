"""The KServe v2 HTTP body: its ``Content-Encoding``, the binary tensor extension's framing (a JSON header of
``Inference-Header-Content-Length`` bytes, then each binary tensor's raw bytes in order), and the choice of
outputs a request makes (``binary_data``, ``binary_data_output``, ``classification``)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.protocol.codecs import decode_input, from_raw_bytes, to_json_data, to_raw_bytes
from service.protocol.headers import HEADER_LENGTH
from service.protocol.request import Answer, OutputAsk
from service.protocol.results import result_body, tensor_header
from service.protocol.schemas import TensorIn, V2InferRequest
from service.protocol.tensors import InferResult, Tensor

# How a JSON or base64 input becomes a tensor: its index, its description, the field naming it in errors.
JsonInputDecoder = Callable[[int, TensorIn, str], Tensor]
# Request parameters the HTTP protocol itself consumes; Triton's HTTP server does not pass them on either.
_HTTP_ONLY_PARAMETERS = frozenset({"binary_data_output"})
# Triton's integer parameters are int64: a larger value fails the protobuf assignment.
_INT64_MAX = 2**63 - 1
# zlib's window bits: 16 + 15 reads a gzip wrapper, 15 the zlib wrapper that HTTP's "deflate" means.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its ``Content-Encoding`` (gzip, deflate or identity) undone, refused past ``limit``."""
    coding = (encoding or "").strip().lower()
    if coding in ("", "identity"):
        return body
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip or deflate")
    inflater = zlib.decompressobj(wbits)
    try:
        # max_length stops a small "zip bomb" from filling memory before the limit is checked.
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {coding} data ({exc})") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"body inflates past the {limit}-byte limit")
    if not inflater.eof or inflater.unused_data:
        raise BadRequest(f"body is not valid {coding} data (truncated, or bytes after the end)")
    return data


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary sections after it (none without ``Inference-Header-Content-Length``)."""
    view = memoryview(body)
    if header_length is None:
        return body, view[len(view) :]
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(f"{HEADER_LENGTH}: expected a number of bytes, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise BadRequest(f"{HEADER_LENGTH}: {length} is not within the body's {len(body)} bytes")
    return bytes(view[:length]), view[length:]


def decode_inputs(
    inputs: Sequence[TensorIn],
    binary: memoryview,
    field: str = "inputs",
    decode_json: JsonInputDecoder | None = None,
) -> list[Tensor]:
    """Every input as numpy: JSON ``data`` or ``b64`` (by ``decode_json``, which may have them read
    already), or its ``binary_data_size`` bytes of ``binary``, in order; the binary sizes must add up to
    exactly the bytes after the header."""
    tensors: list[Tensor] = []
    offset = 0
    for index, tensor in enumerate(inputs):
        where = f"{field}[{index}]"
        size = binary_data_size(tensor.parameters, f"{where}.parameters")
        if size is None:
            tensors.append(
                decode_input(tensor, where) if decode_json is None else decode_json(index, tensor, where)
            )
            continue
        end = offset + size
        if end > len(binary):
            raise BadRequest(
                f"{where}.parameters.binary_data_size: {size} bytes at offset {offset} run past the "
                f"{len(binary)} bytes of binary data after the JSON header"
                + ("" if binary else f" (is the {HEADER_LENGTH} header set?)")
            )
        array = from_raw_bytes(binary[offset:end], tensor.datatype, tensor.shape, f"{where} (binary data)")
        tensors.append(Tensor(tensor.name, tensor.datatype, array))
        offset = end
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes after the JSON header belong to no input "
            f"(the inputs' binary_data_size add up to {offset} of {len(binary)})"
        )
    return tensors


def binary_data_size(parameters: Mapping[str, Any] | None, field: str) -> int | None:
    """The tensor's ``binary_data_size`` parameter, if it has one."""
    if parameters is None or "binary_data_size" not in parameters:
        return None
    return _count(parameters["binary_data_size"], f"{field}.binary_data_size")


def answer_of(request: V2InferRequest) -> Answer:
    """The outputs asked for (all of the model's when none are named) and which of them the answer carries
    as binary sections (``binary_data``, or the request's ``binary_data_output``) or classifies."""
    all_binary = _flag(request.parameters, "binary_data_output", "parameters", default=False)
    if not request.outputs:
        return Answer(None, "binary" if all_binary else "json")
    asked: list[OutputAsk] = []
    for index, output in enumerate(request.outputs):
        where = f"outputs[{index}].parameters"
        classes = _count((output.parameters or {}).get("classification", 0), f"{where}.classification")
        binary = _flag(output.parameters, "binary_data", where, default=all_binary)
        asked.append(OutputAsk(output.name, "binary" if binary else "json", classes))
    return Answer(tuple(asked))


def forwarded_parameters(request: V2InferRequest) -> dict[str, Any]:
    """The request's parameters that Triton acts on (priority, timeout, sequence ids, custom ones)."""
    return {k: v for k, v in (request.parameters or {}).items() if k not in _HTTP_ONLY_PARAMETERS}


def encode_response(result: InferResult, answer: Answer) -> tuple[bytes, int | None]:
    """The v2 answer: JSON alone, or (when ``answer`` asks for binary outputs) the JSON header followed by
    those outputs' raw bytes; the second item is the header's length (``Inference-Header-Content-Length``)."""
    binary = answer.named("binary", [tensor.name for tensor in result.outputs])
    outputs: list[dict[str, Any]] = []
    sections: list[bytes] = []
    for tensor in result.outputs:
        entry = tensor_header(tensor)
        if tensor.name in binary:
            raw = to_raw_bytes(tensor.array, tensor.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            sections.append(raw)
        else:
            entry["data"] = to_json_data(tensor.array, tensor.datatype, tensor.name)
        outputs.append(entry)
    header = orjson.dumps(result_body(result, outputs), option=orjson.OPT_SERIALIZE_NUMPY)
    if not sections:
        return header, None
    return b"".join([header, *sections]), len(header)


def _count(value: Any, field: str) -> int:
    # bool is an int to Python, but "binary_data_size": true is no size. Triton's parameters are int64.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise BadRequest(f"{field}: expected a non-negative integer below 2**63, got {shown}")
    count: int = value
    return count


def _flag(parameters: Mapping[str, Any] | None, key: str, field: str, *, default: bool) -> bool:
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{field}.{key}: expected true or false, got {value!r}")
    return value
