"""The parts of a ModelInferRequest taken from the caller's v2 request: its parameters, the queue timeout
Triton is asked for, and whether running it twice is safe."""

from __future__ import annotations

from collections.abc import Mapping
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
