"""The one pooled Triton gRPC client: deadlines, channel life (max age, one retry on a fresh channel), the
metadata cache, and the translation of gRPC failures into gateway errors. Nothing above this module sees
gRPC."""

from __future__ import annotations

import contextvars
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from service import observability
from service.errors import (
    BadRequest,
    GatewayError,
    ModelNotFound,
    TritonRejected,
    TritonTimeout,
    TritonUnavailable,
    UpstreamError,
)
from service.protocol.metadata import ModelInfo
from service.request_context import current_request_id
from service.settings import Settings
from service.triton.convert import message_to_json, model_info
from service.triton.protos import service_pb2, service_pb2_grpc

if TYPE_CHECKING:
    from service.protocol.tensors import InferResult, OutputSpec, Tensor
from service.triton.scrub import scrub

T = TypeVar("T")

# Triton's own limit (src/core/constants.h); gRPC's 4 MB default would refuse one 1x3x224x224 batch of 2.
_MAX_MESSAGE_BYTES = 2**31 - 1
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    # Channels to one target otherwise share subchannels from a global pool, so a "fresh" channel would
    # inherit the old one's connection back-off and fail at once after Triton restarts.
    ("grpc.use_local_subchannel_pool", 1),
]
# What Triton says when it sheds a request (UNAVAILABLE): its queue is full, or the request waited in it
# past the model's queue timeout. Overload, not an outage: an answer from a live Triton, so never retried,
# and told apart from a broken connection (also UNAVAILABLE).
_SHED_MESSAGES = ("exceeds maximum queue size", "request timeout expired")
# Concurrent Triton calls of one request with several images (a model that does not batch).
_FAN_OUT_THREADS = 4
# Running these twice changes a sequence model's state: such a request is never retried.
_SEQUENCE_PARAMETERS = frozenset({"sequence_id", "sequence_start", "sequence_end"})
# Channels are re-opened after 90-100 % of their max age, so environments started together (a burst of
# cold starts) do not all reconnect in the same second.
_MAX_AGE_JITTER = 0.1
# A call given this share of the request's budget timed out on Triton; with less, the time went elsewhere.
_MOST_OF_THE_BUDGET = 0.9
# Distinct (model, version) pairs whose metadata is kept: far more than a gateway serves, small in memory.
_METADATA_ENTRIES = 256
# gRPC's wording when the TLS handshake to Triton fails on its certificate.
_TLS_FAILURES = ("CERTIFICATE_VERIFY_FAILED", "Hostname Verification", "handshake failed")


class Deadline:
    """The time one request may still spend on Triton calls."""

    def __init__(self, seconds: float) -> None:
        self.budget = seconds
        self._expires = time.monotonic() + seconds
        self._given = seconds  # what the latest Triton call was given

    def remaining(self) -> float:
        """Seconds left; raises :class:`TritonTimeout` once none are (Triton is then not called at all)."""
        left = self.seconds_left()
        if left <= 0:
            # The time went before this call (image decoding, earlier calls): Triton was not the slow part.
            raise TritonTimeout(
                f"the request's deadline of {self.budget:.1f} s passed before Triton was called"
            )
        self._given = left
        return left

    def missed(self) -> TritonTimeout:
        """The error for a Triton call that did not answer in the time :meth:`remaining` gave it."""
        given = self._given
        if given >= self.budget * _MOST_OF_THE_BUDGET:
            return TritonTimeout(f"Triton did not answer within the {self.budget:.1f} s deadline")
        return TritonTimeout(
            f"the request's deadline of {self.budget:.1f} s passed: Triton did not answer in the "
            f"{given:.2f} s that were left of it"
        )

    def seconds_left(self) -> float:
        """Seconds left, 0 once none are (never raises)."""
        return max(self._expires - time.monotonic(), 0.0)


class _Pooled:
    """One gRPC channel and its life: when it is due for replacement, the calls still running on it, and
    whether Triton has answered on it (so a later UNAVAILABLE means its connection just broke)."""

    def __init__(
        self,
        url: str,
        max_age: float,
        credentials: grpc.ChannelCredentials | None,
        options: Sequence[tuple[str, int | str]],
    ) -> None:
        self.channel = (
            grpc.insecure_channel(url, options=options)
            if credentials is None
            else grpc.secure_channel(url, credentials, options=options)
        )
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        jitter = 1.0 - random.uniform(0.0, _MAX_AGE_JITTER)
        self.expires = time.monotonic() + max_age * jitter if max_age > 0 else float("inf")
        self.in_flight = 0
        self.answered = False
        self.retired = False


@dataclass(frozen=True, slots=True)
class _Cached:
    expires: float
    info: ModelInfo


class TritonClient:
    """A gRPC channel to Triton kept for the life of the process (warm Lambda invocations included)."""

    def __init__(
        self,
        url: str,
        *,
        metadata_ttl: float,
        idle_reconnect: float,
        channel_max_age: float = 0.0,
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str = "",
        metadata_entries: int = _METADATA_ENTRIES,
    ) -> None:
        """``channel_max_age`` (seconds, 0 = never) re-opens the channel so that a balancer in front of
        several Tritons spreads this client's calls over the ones that joined since. ``credentials`` (from
        :func:`tls_credentials`) make the channels TLS; ``server_name`` is the name Triton's certificate
        must carry when it is not the host of ``url``."""
        self._url = url
        self._credentials = credentials
        self._options: list[tuple[str, int | str]] = [*_CHANNEL_OPTIONS]
        if server_name:
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._host = url.rsplit(":", 1)[0]
        self._metadata_ttl = metadata_ttl
        self._idle_reconnect = idle_reconnect
        self._channel_max_age = channel_max_age
        self._lock = threading.Lock()
        self._pooled: _Pooled | None = None
        self._retired: set[_Pooled] = set()
        self._last_answer = 0.0
        # Least recently used first, at most ``metadata_entries``: callers naming many models cannot grow it.
        self._metadata: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._metadata_entries = metadata_entries
        self._opened = 0

    # -- health ----------------------------------------------------------------------------------------------

    def server_live(self, deadline: Deadline) -> bool:
        """Triton's liveness."""
        return bool(self._call("ServerLive", service_pb2.ServerLiveRequest(), deadline).live)

    def server_ready(self, deadline: Deadline) -> bool:
        """Triton's readiness (every model it was asked to load is loaded)."""
        return bool(self._call("ServerReady", service_pb2.ServerReadyRequest(), deadline).ready)

    def model_ready(self, name: str, version: str, deadline: Deadline) -> bool:
        """Whether Triton can run ``name`` (at ``version``, or its policy's choice when empty)."""
        request = service_pb2.ModelReadyRequest(name=name, version=version)
        return bool(self._call("ModelReady", request, deadline, model=(name, version)).ready)

    # -- models ----------------------------------------------------------------------------------------------

    def model_info(self, name: str, version: str, deadline: Deadline) -> ModelInfo:
        """Metadata and config of a model, fetched once per TTL."""
        key = (name, version)
        cached = self._metadata.get(key)
        now = time.monotonic()
        if cached is not None and cached.expires > now:
            self._metadata.move_to_end(key)
            return cached.info
        metadata = self._call(
            "ModelMetadata", service_pb2.ModelMetadataRequest(name=name, version=version), deadline, model=key
        )
        config = self._call(
            "ModelConfig", service_pb2.ModelConfigRequest(name=name, version=version), deadline, model=key
        ).config
        info = model_info(metadata, config)
        self._metadata[key] = _Cached(now + self._metadata_ttl, info)
        self._metadata.move_to_end(key)
        while len(self._metadata) > self._metadata_entries:
            self._metadata.popitem(last=False)
        return info

    def server_metadata(self, deadline: Deadline) -> dict[str, Any]:
        """Triton's name, version and protocol extensions, as its HTTP API writes them."""
        return message_to_json(self._call("ServerMetadata", service_pb2.ServerMetadataRequest(), deadline))

    def statistics(self, name: str, version: str, deadline: Deadline) -> dict[str, Any]:
        """Triton's inference statistics of a model (every model when ``name`` is empty), as JSON."""
        request = service_pb2.ModelStatisticsRequest(name=name, version=version)
        model = (name, version) if name else None
        try:
            return message_to_json(self._call("ModelStatistics", request, deadline, model=model))
        except BadRequest:
            # Triton answers INVALID_ARGUMENT ("requested model ... is not available"), not NOT_FOUND.
            if model is None:
                raise
            raise ModelNotFound(_not_served(model)) from None

    def infer(
        self,
        model: str,
        version: str,
        inputs: Sequence[Tensor],
        outputs: Sequence[OutputSpec],
        deadline: Deadline,
        request_id: str = "",
        parameters: Mapping[str, Any] | None = None,
    ) -> InferResult:
        """Run one inference; outputs come back as numpy views over Triton's raw bytes. ``parameters`` are
        the request's v2 parameters (priority, timeout, sequence_id, custom ones), passed on to Triton,
        with a queue ``timeout`` no longer than the deadline where the model lets a request shorten it.

        Triton gets the gateway's request id (API Gateway's), so its "[request id: ...]" log lines can be
        found from the access record; the answer carries the caller's own ``request_id``, as v2 says."""
        # Here, not at import: a cold start answering /health never loads numpy.
        from service.protocol.codecs import from_raw_bytes, to_raw_bytes
        from service.protocol.tensors import InferResult, Tensor

        request = service_pb2.ModelInferRequest(
            model_name=model, model_version=version, id=current_request_id() or request_id
        )
        for key, value in (parameters or {}).items():
            _set_parameter(request.parameters[key], value, key)
        config = self.model_info(model, version, deadline).config
        timeout_us = queue_timeout_us(config, deadline.remaining(), (parameters or {}).get("timeout"))
        if timeout_us is not None:
            request.parameters["timeout"].int64_param = timeout_us
        for tensor in inputs:
            entry = request.inputs.add(name=tensor.name, datatype=tensor.datatype)
            entry.shape.extend(tensor.shape)
            request.raw_input_contents.append(to_raw_bytes(tensor.array, tensor.datatype))
        for output in outputs:
            wanted = request.outputs.add(name=output.name)
            if output.class_count:
                wanted.parameters["classification"].int64_param = output.class_count
        retry_safe = not _SEQUENCE_PARAMETERS.intersection(parameters or {})
        response = self._call("ModelInfer", request, deadline, model=(model, version), retry_safe=retry_safe)
        observability.note_model(response.model_name, response.model_version)
        tensors = [
            Tensor(
                out.name,
                out.datatype,
                from_raw_bytes(raw, out.datatype, out.shape, f"Triton output {out.name}"),
            )
            for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        ]
        return InferResult(response.model_name, response.model_version, request_id, tensors)

    def infer_many(
        self,
        model: str,
        version: str,
        calls: Sequence[Sequence[Tensor]],
        outputs: Sequence[OutputSpec],
        deadline: Deadline,
        request_id: str = "",
    ) -> list[InferResult]:
        """Run independent inferences (one per entry of ``calls``) concurrently, all within ``deadline``;
        results in the order of ``calls``. The first failure is raised; calls not yet started are dropped."""
        if len(calls) == 1:
            return [self.infer(model, version, calls[0], outputs, deadline, request_id)]
        # The gRPC channel is thread-safe: the calls share it, each with the deadline's remaining time. Each
        # runs in a copy of this context, so it sends the request's id and is observed as part of it.
        pool = _fan_out_pool()
        futures = [
            pool.submit(_in_context(self.infer), model, version, inputs, outputs, deadline, request_id)
            for inputs in calls
        ]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    # -- the channel -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every channel now (calls still running on them fail); the next call opens a new one."""
        with self._lock:
            pooled = [*self._retired, *([self._pooled] if self._pooled else [])]
            self._pooled, self._retired = None, set()
        for entry in pooled:
            entry.channel.close()

    @property
    def channels_opened(self) -> int:
        """How many channels this client has opened (for tests and diagnostics)."""
        return self._opened

    def _acquire(self) -> _Pooled:
        # The current channel, replaced once past its max age; the caller must _release it.
        idle: _Pooled | None = None
        with self._lock:
            current = self._pooled
            if current is not None and current.expires <= time.monotonic():
                idle = self._retire_locked(current)
                current = None
            if current is None:
                current = self._pooled = _Pooled(
                    self._url, self._channel_max_age, self._credentials, self._options
                )
                self._opened += 1
            current.in_flight += 1
        if idle is not None:
            idle.channel.close()
        return current

    def _release(self, pooled: _Pooled) -> None:
        with self._lock:
            pooled.in_flight -= 1
            closing = pooled.retired and pooled.in_flight == 0 and pooled in self._retired
            if closing:
                self._retired.discard(pooled)
        if closing:
            pooled.channel.close()

    def _retire(self, pooled: _Pooled) -> None:
        with self._lock:
            idle = self._retire_locked(pooled)
        if idle is not None:
            idle.channel.close()

    def _retire_locked(self, pooled: _Pooled) -> _Pooled | None:
        # New calls go to a new channel; calls still running on this one finish there, and the last one
        # to finish closes it (closing it now would cancel them). Returns the channel to close now when
        # none is running on it.
        if self._pooled is pooled:
            self._pooled = None
        if pooled.retired:
            return None
        pooled.retired = True
        if pooled.in_flight == 0:
            return pooled
        self._retired.add(pooled)
        return None

    def _call(
        self,
        method: str,
        request: Message,
        deadline: Deadline,
        model: tuple[str, str] | None = None,
        *,
        retry_safe: bool = True,
    ) -> Any:
        with observability.triton_call(method, model, deadline):
            return self._call_with_retry(method, request, deadline, model, retry_safe)

    def _call_with_retry(
        self,
        method: str,
        request: Message,
        deadline: Deadline,
        model: tuple[str, str] | None,
        retry_safe: bool,
    ) -> Any:
        pooled = self._acquire()
        idle = time.monotonic() - self._last_answer
        try:
            return self._invoke(pooled, method, request, deadline)
        except grpc.RpcError as first:
            if not (retry_safe and self._worth_retrying(first, pooled, idle)):
                raise self._translate(first, deadline, model) from None
            self._retire(pooled)
        finally:
            self._release(pooled)
        pooled = self._acquire()
        try:
            return self._invoke(pooled, method, request, deadline)
        except grpc.RpcError as second:
            raise self._translate(second, deadline, model) from None
        finally:
            self._release(pooled)

    def _worth_retrying(self, error: grpc.RpcError, pooled: _Pooled, idle: float) -> bool:
        # One fresh channel tells a dead connection from a Triton that is down: after idleness (a frozen
        # Lambda, an NLB that dropped the flow, a restarted Triton), or when a channel Triton answered on
        # just broke (a Triton killed or drained behind the balancer: the fresh connection reaches another).
        # A channel that never got an answer is not retried, so a Triton that stays down costs one attempt
        # per call, not two; Triton's own shedding answers are never retried.
        if error.code() != grpc.StatusCode.UNAVAILABLE or _shed(error):
            return False
        return pooled.answered or idle >= self._idle_reconnect

    def _invoke(self, pooled: _Pooled, method: str, request: Message, deadline: Deadline) -> Any:
        rpc: Callable[..., Any] = getattr(pooled.stub, method)
        try:
            response = rpc(request, timeout=deadline.remaining())
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or _shed(error):
                pooled.answered = True  # Triton answered, so the connection is alive
            raise
        pooled.answered = True
        self._last_answer = time.monotonic()
        return response

    def _translate(
        self, error: grpc.RpcError, deadline: Deadline, model: tuple[str, str] | None
    ) -> GatewayError:
        # 5xx answers carry a fixed message per kind; Triton's own text (backend exceptions, file paths,
        # addresses) goes to the log only, through ``detail``.
        code = error.code()
        if code != grpc.StatusCode.UNAVAILABLE or _shed(error):
            self._last_answer = time.monotonic()  # Triton answered, so the channel is alive
        raw = error.details() or ""
        detail = f"{code.name}: {raw}"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            timeout = deadline.missed()
            timeout.detail = detail
            return timeout
        if code == grpc.StatusCode.NOT_FOUND:
            return ModelNotFound(
                _not_served(model) if model else scrub(raw, self._url, self._host), detail=detail
            )
        if _shed(error):
            return _shed_answer(deadline, detail)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            if self._credentials is not None and any(word in raw for word in _TLS_FAILURES):
                return TritonUnavailable(
                    "Triton is unavailable: its TLS certificate did not verify",
                    {"Retry-After": "1"},
                    detail="TLS to Triton failed certificate verification (check TRITON_GRPC_TLS_CA and "
                    f"TRITON_GRPC_TLS_SERVER_NAME): {detail}",
                )
            return TritonUnavailable("Triton is unavailable; try again shortly", {"Retry-After": "1"}, detail)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return TritonRejected("Triton is overloaded; try again shortly", {"Retry-After": "1"}, detail)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return BadRequest(scrub(raw, self._url, self._host), detail=detail)
        return UpstreamError(f"Triton failed to run the request ({code.name})", detail=detail)


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


def _shed_answer(deadline: Deadline, detail: str) -> GatewayError:
    # The queue timeout we passed may be the caller's remaining deadline: then it is the deadline that
    # passed, not Triton that is overloaded.
    if deadline.seconds_left() < 0.005:
        timeout = deadline.missed()
        timeout.detail = detail
        return timeout
    return TritonRejected("Triton is overloaded; try again shortly", {"Retry-After": "1"}, detail)


def _shed(error: grpc.RpcError) -> bool:
    """Whether Triton refused the request for overload (it answered: the channel is alive)."""
    details = (error.details() or "").lower()
    return error.code() == grpc.StatusCode.UNAVAILABLE and any(m in details for m in _SHED_MESSAGES)


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


def _not_served(model: tuple[str, str]) -> str:
    name, version = model
    return (
        f"model {name!r} version {version!r} is not served here"
        if version
        else f"model {name!r} is not served here"
    )


def _in_context(call: Callable[..., T]) -> Callable[..., T]:
    """``call``, to run in a copy of the current context (a pool thread would otherwise have an empty one)."""
    return partial(contextvars.copy_context().run, call)


@lru_cache(maxsize=1)
def _fan_out_pool() -> ThreadPoolExecutor:
    # Small: a Lambda has one or two vCPUs, and Triton queues what it cannot run at once anyway.
    return ThreadPoolExecutor(max_workers=_FAN_OUT_THREADS, thread_name_prefix="triton-fan-out")


def tls_credentials(ca_pem: str) -> grpc.ChannelCredentials:
    """TLS credentials that trust ``ca_pem`` (PEM text; empty: the system's roots)."""
    return grpc.ssl_channel_credentials(root_certificates=ca_pem.encode() if ca_pem else None)


def get_client(settings: Settings) -> TritonClient:
    """The process's client for the configured Triton, created on first use and then reused."""
    tls = (
        (settings.triton_grpc_tls_ca, settings.triton_grpc_tls_server_name)
        if settings.triton_grpc_tls
        else None
    )
    return _client(
        settings.triton_grpc_url,
        settings.metadata_ttl_seconds,
        settings.idle_reconnect_seconds,
        settings.channel_max_age_seconds,
        tls,
    )


@lru_cache(maxsize=8)
def _client(
    url: str, metadata_ttl: float, idle_reconnect: float, channel_max_age: float, tls: tuple[str, str] | None
) -> TritonClient:
    ca_pem, server_name = tls or ("", "")
    return TritonClient(
        url,
        metadata_ttl=metadata_ttl,
        idle_reconnect=idle_reconnect,
        channel_max_age=channel_max_age,
        credentials=tls_credentials(ca_pem) if tls is not None else None,
        server_name=server_name,
    )
