"""The parts of a ModelInferRequest taken from the caller's v2 request: its parameters, the queue timeout
Triton is asked for, whether running it twice is safe; and its wire form, with the tensors' bytes copied
once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service.errors import BadRequest
from service.triton.protos import service_pb2

# Running these twice changes a sequence model's state: such a request is never retried.
_SEQUENCE_PARAMETERS = frozenset({"sequence_id", "sequence_start", "sequence_end"})


def set_parameters(request: service_pb2.ModelInferRequest, parameters: Mapping[str, Any]) -> None:
    """Copy the caller's v2 ``parameters`` into ``request``; :class:`BadRequest` names one of no v2 type."""
    for key, value in parameters.items():
        _set_parameter(request.parameters[key], value, key)


def retry_safe(parameters: Mapping[str, Any]) -> bool:
    """Whether a request with these parameters may be sent again (it names no sequence)."""
    return not _SEQUENCE_PARAMETERS.intersection(parameters)


def queue_timeout_us(config: Mapping[str, Any], remaining: float, asked: Any = None) -> int | None:
    """The ``timeout`` (microseconds) to ask Triton for, from a model's config (as v2 JSON): the least of
    the request's remaining deadline, the model's default queue timeout and the caller's own ``timeout``,
    so Triton drops work whose caller has given up and never queues it longer than the model says. None
    when the model's queue policy does not let a request override its timeout (Triton would ignore it)."""
    policy = config.get("dynamic_batching", {}).get("default_queue_policy", {})
    if not policy.get("allow_timeout_override"):
        return None
    candidates = [max(int(remaining * 1_000_000), 1)]
    default = int(policy.get("default_timeout_microseconds") or 0)
    if default > 0:  # 0 is "no timeout"
        candidates.append(default)
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        candidates.append(asked)
    return min(candidates)


def _set_parameter(parameter: service_pb2.InferParameter, value: Any, key: str) -> None:
    # bool before int: JSON true is a Python bool, which is also an int.
    try:
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            parameter.int64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        elif isinstance(value, str):
            parameter.string_param = value
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise BadRequest(
            f"parameters.{key}: a parameter is a boolean, a 64-bit integer, a number or a string, "
            f"got {value!r}"
        ) from None


def serialize_infer_request(
    request: service_pb2.ModelInferRequest, raw: Sequence[bytes | memoryview]
) -> bytes:
    """``request`` on the wire with ``raw`` as its ``raw_input_contents``, each buffer copied once.

    Protobuf's own way costs up to three copies of a 600 kB tensor (a view of the body into bytes, those
    into the message, the message into its serialization): here protobuf serializes the message without
    them and each follows as the field it is, since a parser reads concatenated messages as one message,
    repeated fields appended in order (the protobuf encoding's own rule)."""
    parts: list[bytes | memoryview] = [request.SerializeToString()]
    for buffer in raw:
        parts += (_RAW_INPUT_KEY, _varint(memoryview(buffer).nbytes), buffer)
    return b"".join(parts)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# The key of one raw_input_contents entry: its field number and wire type 2 (length-delimited).
_RAW_INPUT_KEY = _varint(
    service_pb2.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number << 3 | 2
)
