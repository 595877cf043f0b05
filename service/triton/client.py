"""The one pooled Triton gRPC client: its calls (coroutines), the one retry on a fresh channel, and the
metadata cache. Its neighbours own the deadline (``deadline``), the channel's life (``channel``), whether a
call blocks inline or is awaited (``inline``), the request's parts (``infer_request``), the fan-out pool
(``fan_out``) and the translation of gRPC failures (``failures``). Nothing above this package sees gRPC."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message

from service import observability
from service.errors import BadRequest, GatewayError, ModelNotFound
from service.protocol.metadata import ModelInfo
from service.request_context import current_request_id
from service.settings import Settings
from service.triton.channel import ChannelPool, Pooled, tls_credentials
from service.triton.convert import message_to_json, model_info
from service.triton.deadline import Deadline
from service.triton.failures import leaving, not_served, shed, translate
from service.triton.fan_out import run_all
from service.triton.infer_request import (
    queue_timeout_us,
    retry_safe,
    serialize_infer_request,
    set_parameters,
)
from service.triton.inline import calls_inline, finish_inline
from service.triton.protos import service_pb2

if TYPE_CHECKING:
    from service.protocol.tensors import InferResult, OutputSpec, Tensor

# Importable from here as before the split.
__all__ = ["Deadline", "TritonClient", "get_client", "queue_timeout_us", "tls_credentials"]

# Distinct (model, version) pairs whose metadata is kept: far more than a gateway serves, small in memory.
_METADATA_ENTRIES = 256
# A retry looks this long at most (and never past half the deadline) for a fresh connection whose Triton
# serves the model: a Triton shutting down keeps accepting connections until the balancer's health check
# takes it out (~1 s behind HAProxy here), and it serves no model meanwhile.
_SEEK_SECONDS = 3.0
_SEEK_PAUSE_SECONDS = 0.05
_PROBE_SHARE = 0.05
_PROBE_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class _Cached:
    expires: float
    info: ModelInfo


class TritonClient:
    """A gRPC channel to Triton kept for the life of the process (warm Lambda invocations included). Every
    call is a coroutine: awaited on an asyncio channel, or made inline on a blocking one within
    :func:`~service.triton.inline.inline_calls` (a Lambda)."""

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
        self._tls = credentials is not None
        self._channels = ChannelPool(url, channel_max_age, credentials, server_name)
        self._async_channels = ChannelPool(url, channel_max_age, credentials, server_name, asynchronous=True)
        self._host = url.rsplit(":", 1)[0]
        self._metadata_ttl = metadata_ttl
        self._idle_reconnect = idle_reconnect
        self._last_answer = 0.0
        # Least recently used first, at most ``metadata_entries``: callers naming many models cannot grow it.
        self._metadata: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._metadata_entries = metadata_entries

    def connect(self) -> None:
        """Start connecting the blocking channel (the one calls made inline use: a Lambda's) now rather than
        on the first call, so a cold start overlaps the two."""
        self._channels.connect()

    # -- health ----------------------------------------------------------------------------------------------

    async def server_live(self, deadline: Deadline) -> bool:
        """Triton's liveness."""
        return bool((await self._call("ServerLive", service_pb2.ServerLiveRequest(), deadline)).live)

    async def server_ready(self, deadline: Deadline) -> bool:
        """Triton's readiness (every model it was asked to load is loaded)."""
        return bool((await self._call("ServerReady", service_pb2.ServerReadyRequest(), deadline)).ready)

    async def model_ready(self, name: str, version: str, deadline: Deadline) -> bool:
        """Whether Triton can run ``name`` (at ``version``, or its policy's choice when empty)."""
        request = service_pb2.ModelReadyRequest(name=name, version=version)
        return bool((await self._call("ModelReady", request, deadline, model=(name, version))).ready)

    # -- models ----------------------------------------------------------------------------------------------

    async def model_info(self, name: str, version: str, deadline: Deadline) -> ModelInfo:
        """Metadata and config of a model, fetched once per TTL."""
        key = (name, version)
        cached = self._metadata.get(key)
        now = time.monotonic()
        if cached is not None and cached.expires > now:
            self._metadata.move_to_end(key)
            return cached.info
        try:
            metadata = await self._call(
                "ModelMetadata",
                service_pb2.ModelMetadataRequest(name=name, version=version),
                deadline,
                model=key,
            )
            config = (
                await self._call(
                    "ModelConfig",
                    service_pb2.ModelConfigRequest(name=name, version=version),
                    deadline,
                    model=key,
                )
            ).config
        except ModelNotFound:
            # Gone since it was cached (the retry met it too): from now on 404 at once.
            self._metadata.pop(key, None)
            raise
        info = model_info(metadata, config)
        self._metadata[key] = _Cached(now + self._metadata_ttl, info)
        self._metadata.move_to_end(key)
        while len(self._metadata) > self._metadata_entries:
            self._metadata.popitem(last=False)
        return info

    async def server_metadata(self, deadline: Deadline) -> dict[str, Any]:
        """Triton's name, version and protocol extensions, as its HTTP API writes them."""
        return message_to_json(
            await self._call("ServerMetadata", service_pb2.ServerMetadataRequest(), deadline)
        )

    async def statistics(self, name: str, version: str, deadline: Deadline) -> dict[str, Any]:
        """Triton's inference statistics of a model (every model when ``name`` is empty), as JSON."""
        request = service_pb2.ModelStatisticsRequest(name=name, version=version)
        model = (name, version) if name else None
        try:
            return message_to_json(await self._call("ModelStatistics", request, deadline, model=model))
        except BadRequest:
            # Triton answers INVALID_ARGUMENT ("requested model ... is not available"), not NOT_FOUND.
            if model is None:
                raise
            raise ModelNotFound(not_served(model)) from None

    async def infer(
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
        from service.protocol.codecs import from_raw_bytes, raw_buffer
        from service.protocol.tensors import InferResult, Tensor

        request = service_pb2.ModelInferRequest(
            model_name=model, model_version=version, id=current_request_id() or request_id
        )
        set_parameters(request, parameters or {})
        config = (await self.model_info(model, version, deadline)).config
        timeout_us = queue_timeout_us(config, deadline.remaining(), (parameters or {}).get("timeout"))
        if timeout_us is not None:
            request.parameters["timeout"].int64_param = timeout_us
        for tensor in inputs:
            entry = request.inputs.add(name=tensor.name, datatype=tensor.datatype)
            entry.shape.extend(tensor.shape)
        for output in outputs:
            wanted = request.outputs.add(name=output.name)
            if output.class_count:
                wanted.parameters["classification"].int64_param = output.class_count
        serialized = serialize_infer_request(
            request, [raw_buffer(tensor.array, tensor.datatype) for tensor in inputs]
        )
        safe = retry_safe(parameters or {})
        response = await self._call(
            "ModelInfer", serialized, deadline, model=(model, version), retry_safe=safe
        )
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

    async def infer_many(
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
            return [await self.infer(model, version, calls[0], outputs, deadline, request_id)]
        # The calls share the channel, each with the deadline's remaining time, and each runs in a copy of
        # this context (a task's, or a fan-out thread's), so it sends the request's id and is observed as
        # part of it. Inline, each blocks a thread of the small fan-out pool.
        if calls_inline():
            return run_all(
                self._infer_inline,
                [(model, version, inputs, outputs, deadline, request_id) for inputs in calls],
            )
        tasks = [
            asyncio.ensure_future(self.infer(model, version, inputs, outputs, deadline, request_id))
            for inputs in calls
        ]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    def _infer_inline(self, *args: Any) -> InferResult:
        return finish_inline(self.infer(*args))

    # -- the channel -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every channel now (calls still running on them fail); the next call opens a new one."""
        self._channels.close()
        self._async_channels.close()

    @property
    def channels_opened(self) -> int:
        """How many channels this client has opened (for tests and diagnostics)."""
        return self._channels.opened + self._async_channels.opened

    async def _call(
        self,
        method: str,
        request: Message | bytes,
        deadline: Deadline,
        model: tuple[str, str] | None = None,
        *,
        retry_safe: bool = True,
    ) -> Any:
        with observability.triton_call(method, model, deadline):
            return await self._call_with_retry(method, request, deadline, model, retry_safe)

    async def _call_with_retry(
        self,
        method: str,
        request: Message | bytes,
        deadline: Deadline,
        model: tuple[str, str] | None,
        retry_safe: bool,
    ) -> Any:
        channels = self._channels if calls_inline() else self._async_channels
        pooled = channels.acquire()
        idle = time.monotonic() - self._last_answer
        try:
            return await self._invoke(pooled, method, request, deadline)
        except grpc.RpcError as first:
            if not (retry_safe and self._worth_retrying(first, pooled, idle, model)):
                raise self._translate(first, deadline, model) from None
            channels.retire(pooled)
        finally:
            channels.release(pooled)
        pooled = await self._serving_channel(channels, model, deadline)
        try:
            return await self._invoke(pooled, method, request, deadline)
        except grpc.RpcError as second:
            if second.code() == grpc.StatusCode.NOT_FOUND and model is not None:
                # Not served by a Triton that is staying either: from now on 404 at once.
                self._metadata.pop(model, None)
            raise self._translate(second, deadline, model) from None
        finally:
            channels.release(pooled)

    async def _serving_channel(
        self, channels: ChannelPool, model: tuple[str, str] | None, deadline: Deadline
    ) -> Pooled:
        """A fresh channel for a retry; for a model's call, re-opened (a new connection, so the balancer
        chooses again) while its Triton answers that it is shutting down: a Triton leaving (SIGTERM) still
        gets connections until the balancer's health check takes it out. The request itself still goes
        once more only. Whoever gets the channel releases it."""
        give_up = time.monotonic() + min(_SEEK_SECONDS, deadline.seconds_left() / 2)
        while True:
            pooled = channels.acquire()
            if model is None:
                return pooled
            try:
                await self._model_ready_on(pooled, model, deadline)
                return pooled  # a Triton that is staying answered (whether it has the model or not)
            except grpc.RpcError as error:
                if not leaving(error) or time.monotonic() >= give_up:
                    return pooled  # the retry itself tells what is wrong
            except BaseException:
                channels.release(pooled)
                raise
            channels.retire(pooled)
            channels.release(pooled)
            if pooled.loop is None:
                time.sleep(_SEEK_PAUSE_SECONDS)  # inline: nothing else runs meanwhile
            else:
                await asyncio.sleep(_SEEK_PAUSE_SECONDS)

    @staticmethod
    async def _model_ready_on(pooled: Pooled, model: tuple[str, str], deadline: Deadline) -> bool:
        request = service_pb2.ModelReadyRequest(name=model[0], version=model[1])
        # A small share of what is left: a Triton that does not answer at all (hung) leaves the retry
        # nearly the whole deadline.
        timeout = min(deadline.remaining() * _PROBE_SHARE, _PROBE_SECONDS)
        if pooled.loop is None:
            response = pooled.stub.ModelReady(request, timeout=timeout)
        else:
            response = await pooled.stub.ModelReady(request, timeout=timeout)
        return bool(response.ready)

    def _worth_retrying(
        self, error: grpc.RpcError, pooled: Pooled, idle: float, model: tuple[str, str] | None
    ) -> bool:
        # One fresh channel tells a dead connection from a Triton that is down: after idleness (a frozen
        # Lambda, an NLB that dropped the flow, a restarted Triton), or when a channel Triton answered on
        # just broke (a Triton killed or drained behind the balancer: the fresh connection reaches another).
        # A channel that never got an answer is not retried, so a Triton that stays down costs one attempt
        # per call, not two; Triton's own shedding answers are never retried.
        code = error.code()
        if code == grpc.StatusCode.NOT_FOUND:
            # A Triton shutting down unloads every model at once and answers "unknown model" on the
            # connections it still has: for a model this client was served (it has its metadata), the
            # fresh connection reaches a Triton that serves it. A model never seen is 404 at once.
            return model is not None and model in self._metadata
        if code != grpc.StatusCode.UNAVAILABLE or shed(error):
            return False
        return pooled.answered or idle >= self._idle_reconnect

    async def _invoke(self, pooled: Pooled, method: str, request: Message | bytes, deadline: Deadline) -> Any:
        # bytes: a ModelInferRequest already serialized, with its tensors copied once.
        rpc: Callable[..., Any] = (
            pooled.infer_serialized if isinstance(request, bytes) else getattr(pooled.stub, method)
        )
        try:
            if pooled.loop is None:
                response = rpc(request, timeout=deadline.remaining())
            else:
                response = await rpc(request, timeout=deadline.remaining())
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or shed(error):
                pooled.answered = True  # Triton answered, so the connection is alive
            raise
        pooled.answered = True
        self._last_answer = time.monotonic()
        return response

    def _translate(
        self, error: grpc.RpcError, deadline: Deadline, model: tuple[str, str] | None
    ) -> GatewayError:
        if error.code() != grpc.StatusCode.UNAVAILABLE or shed(error):
            self._last_answer = time.monotonic()  # Triton answered, so the channel is alive
        return translate(error, deadline, model, url=self._url, host=self._host, tls=self._tls)


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
