"""The pooled gRPC channel to Triton and its life: options, TLS, re-opening past a max age, and closing a
retired channel only once the calls still running on it are done. A pool holds blocking channels (calls
made inline, as a Lambda makes them) or asyncio channels (calls awaited on the event loop they belong to)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc

from service.triton.protos import service_pb2, service_pb2_grpc

# Triton's own limit (src/core/constants.h); gRPC's 4 MB default would refuse one 1x3x224x224 batch of 2.
_MAX_MESSAGE_BYTES = 2**31 - 1
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    # Channels to one target otherwise share subchannels from a global pool, so a "fresh" channel would
    # inherit the old one's connection back-off and fail at once after Triton restarts.
    ("grpc.use_local_subchannel_pool", 1),
]
_MODEL_INFER = f"/{service_pb2.DESCRIPTOR.services_by_name['GRPCInferenceService'].full_name}/ModelInfer"
# How long connect()'s probe may wait for Triton's answer (nothing waits for it; a Lambda's init is <= 10 s).
_CONNECT_PROBE_SECONDS = 5.0
# Channels are re-opened after 90-100 % of their max age, so environments started together (a burst of
# cold starts) do not all reconnect in the same second.
_MAX_AGE_JITTER = 0.1


def tls_credentials(ca_pem: str) -> grpc.ChannelCredentials:
    """TLS credentials that trust ``ca_pem`` (PEM text; empty: the system's roots)."""
    return grpc.ssl_channel_credentials(root_certificates=ca_pem.encode() if ca_pem else None)


class Pooled:
    """One gRPC channel and its life: when it is due for replacement, the calls still running on it, and
    whether Triton has answered on it (so a later UNAVAILABLE means its connection just broke). A blocking
    channel, or an asyncio one bound to ``loop``, the loop it was opened on."""

    def __init__(
        self,
        url: str,
        max_age: float,
        credentials: grpc.ChannelCredentials | None,
        options: Sequence[tuple[str, int | str]],
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.loop = loop
        self.channel: Any
        if loop is None:
            self.channel = (
                grpc.insecure_channel(url, options=options)
                if credentials is None
                else grpc.secure_channel(url, credentials, options=options)
            )
        else:
            self.channel = (
                grpc.aio.insecure_channel(url, options=options)
                if credentials is None
                else grpc.aio.secure_channel(url, credentials, options=options)
            )
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)
        # ModelInfer for a request already on the wire (``infer_request.serialize_infer_request``).
        self.infer_serialized: Any = self.channel.unary_unary(
            _MODEL_INFER, response_deserializer=service_pb2.ModelInferResponse.FromString
        )
        jitter = 1.0 - random.uniform(0.0, _MAX_AGE_JITTER)
        self.expires = time.monotonic() + max_age * jitter if max_age > 0 else float("inf")
        self.in_flight = 0
        self.answered = False
        self.retired = False

    def close(self) -> None:
        """Close the channel (calls still running on it fail). An asyncio channel closes on its own loop;
        one whose loop is gone has nothing left to close."""
        if self.loop is None:
            self.channel.close()
            return
        if self.loop.is_closed():
            return
        closing = self.channel.close()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            task = self.loop.create_task(closing)
            _CLOSING.add(task)  # held until done: the loop keeps only a weak reference to a task
            task.add_done_callback(_CLOSING.discard)
        elif self.loop.is_running():
            asyncio.run_coroutine_threadsafe(closing, self.loop)
        else:
            self.loop.run_until_complete(closing)


_CLOSING: set[asyncio.Task[None]] = set()


class ChannelPool:
    """The current channel to one Triton (opened on first use, replaced past its max age or when retired)
    and the retired ones still finishing calls: blocking channels, or, when ``asynchronous``, asyncio
    channels opened on the running loop (a channel of another loop is replaced)."""

    def __init__(
        self,
        url: str,
        max_age: float,
        credentials: grpc.ChannelCredentials | None,
        server_name: str,
        *,
        asynchronous: bool = False,
    ) -> None:
        """``max_age`` (seconds, 0 = never); ``server_name`` is the name Triton's certificate must carry
        when it is not the host of ``url``."""
        self.asynchronous = asynchronous
        self._url = url
        self._max_age = max_age
        self._credentials = credentials
        self._options: list[tuple[str, int | str]] = [*_CHANNEL_OPTIONS]
        if server_name:
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._lock = threading.Lock()
        self._pooled: Pooled | None = None
        self._retired: set[Pooled] = set()
        self.opened = 0

    def close(self) -> None:
        """Close every channel now (calls still running on them fail); the next call opens a new one."""
        with self._lock:
            pooled = [*self._retired, *([self._pooled] if self._pooled else [])]
            self._pooled, self._retired = None, set()
        for entry in pooled:
            entry.close()

    def connect(self) -> None:
        """Open the current channel and have gRPC connect it now, in its own threads, instead of on the
        first call; whether that first attempt succeeds is the calls' business, so nothing waits for it.

        The connection is made by a liveness probe whose answer nobody waits for, not by a connectivity
        subscription: gRPC's subscription thread raises in the background (grpc/grpc#18995) when the channel
        is closed under it, as a channel retired or closed while its connection attempt hangs would be. A
        probe on a closed channel is only cancelled."""
        pooled = self.acquire()
        try:
            pooled.stub.ServerLive.future(service_pb2.ServerLiveRequest(), timeout=_CONNECT_PROBE_SECONDS)
        finally:
            self.release(pooled)

    def acquire(self) -> Pooled:
        """The current channel, replaced once past its max age; the caller must :meth:`release` it."""
        idle: Pooled | None = None
        loop = asyncio.get_running_loop() if self.asynchronous else None
        with self._lock:
            current = self._pooled
            if current is not None and (current.expires <= time.monotonic() or current.loop is not loop):
                idle = self._retire_locked(current)
                current = None
            if current is None:
                current = self._pooled = Pooled(
                    self._url, self._max_age, self._credentials, self._options, loop
                )
                self.opened += 1
            current.in_flight += 1
        if idle is not None:
            idle.close()
        return current

    def release(self, pooled: Pooled) -> None:
        """End one call on ``pooled``; the last call on a retired channel closes it."""
        with self._lock:
            pooled.in_flight -= 1
            closing = pooled.retired and pooled.in_flight == 0 and pooled in self._retired
            if closing:
                self._retired.discard(pooled)
        if closing:
            pooled.close()

    def retire(self, pooled: Pooled) -> None:
        """Send new calls to a new channel; ``pooled`` closes once its running calls are done."""
        with self._lock:
            idle = self._retire_locked(pooled)
        if idle is not None:
            idle.close()

    def _retire_locked(self, pooled: Pooled) -> Pooled | None:
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
