"""The one pooled Triton gRPC client: deadlines, one retry after idleness, the metadata cache, and the
translation of gRPC failures into gateway errors. Nothing above this module sees gRPC."""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from tritonclient.grpc import service_pb2, service_pb2_grpc

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
from service.protocol.codecs import from_raw_bytes, to_raw_bytes
from service.protocol.metadata import ModelInfo
from service.protocol.tensors import InferResult, OutputSpec, Tensor
from service.request_context import current_request_id
from service.settings import Settings
from service.triton.convert import message_to_json, model_info
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
# past the model's queue timeout. Overload, not an outage.
_SHED_MESSAGES = ("exceeds maximum queue size", "request timeout expired")
# Concurrent Triton calls of one request with several images (a model that does not batch).
_FAN_OUT_THREADS = 4
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
        left = self._expires - time.monotonic()
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
        credentials: grpc.ChannelCredentials | None = None,
        server_name: str = "",
        metadata_entries: int = _METADATA_ENTRIES,
    ) -> None:
        """``credentials`` (from :func:`tls_credentials`) make the channel TLS; ``server_name`` is the name
        Triton's certificate must carry when it is not the host of ``url``."""
        self._url = url
        self._credentials = credentials
        self._options: list[tuple[str, int | str]] = [*_CHANNEL_OPTIONS]
        if server_name:
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._host = url.rsplit(":", 1)[0]
        self._metadata_ttl = metadata_ttl
        self._idle_reconnect = idle_reconnect
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: service_pb2_grpc.GRPCInferenceServiceStub | None = None
        self._last_answer = 0.0
        # Least recently used first, at most ``metadata_entries``: callers naming many models cannot grow it.
        self._metadata: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._metadata_entries = metadata_entries
        self.channels_opened = 0

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
        the request's v2 parameters (priority, timeout, sequence_id, custom ones), passed on to Triton.

        Triton gets the gateway's request id (API Gateway's), so its "[request id: ...]" log lines can be
        found from the access record; the answer carries the caller's own ``request_id``, as v2 says."""
        request = service_pb2.ModelInferRequest(
            model_name=model, model_version=version, id=current_request_id() or request_id
        )
        for key, value in (parameters or {}).items():
            _set_parameter(request.parameters[key], value, key)
        for tensor in inputs:
            entry = request.inputs.add(name=tensor.name, datatype=tensor.datatype)
            entry.shape.extend(tensor.shape)
            request.raw_input_contents.append(to_raw_bytes(tensor.array, tensor.datatype))
        for output in outputs:
            wanted = request.outputs.add(name=output.name)
            if output.class_count:
                wanted.parameters["classification"].int64_param = output.class_count
        response = self._call("ModelInfer", request, deadline, model=(model, version))
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
        """Close the channel; the next call opens a new one."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None

    def _current_stub(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        with self._lock:
            if self._stub is None:
                self._channel = (
                    grpc.insecure_channel(self._url, options=self._options)
                    if self._credentials is None
                    else grpc.secure_channel(self._url, self._credentials, options=self._options)
                )
                self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
                self.channels_opened += 1
            return self._stub

    def _reopen(self, stale: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
        with self._lock:
            if self._stub is stale and self._channel is not None:
                self._channel.close()
                self._channel = self._stub = None

    def _call(
        self, method: str, request: Message, deadline: Deadline, model: tuple[str, str] | None = None
    ) -> Any:
        with observability.triton_call(method, model, deadline):
            return self._call_with_retry(method, request, deadline, model)

    def _call_with_retry(
        self, method: str, request: Message, deadline: Deadline, model: tuple[str, str] | None
    ) -> Any:
        stub = self._current_stub()
        idle = time.monotonic() - self._last_answer
        try:
            return self._invoke(stub, method, request, deadline)
        except grpc.RpcError as first:
            # A channel that sat idle (a frozen Lambda, an NLB that dropped the flow, a restarted Triton)
            # may be dead or in reconnect back-off; one fresh channel tells that apart from Triton being down.
            # A request Triton shed came from a live Triton: no fresh channel (closing this one would
            # cancel the calls of other requests on it).
            if first.code() != grpc.StatusCode.UNAVAILABLE or idle < self._idle_reconnect or _shed(first):
                raise self._translate(first, deadline, model) from None
            self._reopen(stub)
        try:
            return self._invoke(self._current_stub(), method, request, deadline)
        except grpc.RpcError as second:
            raise self._translate(second, deadline, model) from None

    def _invoke(
        self,
        stub: service_pb2_grpc.GRPCInferenceServiceStub,
        method: str,
        request: Message,
        deadline: Deadline,
    ) -> Any:
        rpc: Callable[..., Any] = getattr(stub, method)
        response = rpc(request, timeout=deadline.remaining())
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
            return TritonRejected("Triton is overloaded; try again shortly", {"Retry-After": "1"}, detail)
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
        settings.triton_grpc_url, settings.metadata_ttl_seconds, settings.idle_reconnect_seconds, tls
    )


@lru_cache(maxsize=8)
def _client(
    url: str, metadata_ttl: float, idle_reconnect: float, tls: tuple[str, str] | None
) -> TritonClient:
    if tls is None:
        return TritonClient(url, metadata_ttl=metadata_ttl, idle_reconnect=idle_reconnect)
    ca_pem, server_name = tls
    return TritonClient(
        url,
        metadata_ttl=metadata_ttl,
        idle_reconnect=idle_reconnect,
        credentials=tls_credentials(ca_pem),
        server_name=server_name,
    )
