"""Generation over gRPC with ``grpc.aio``: a decoupled model through the bidirectional ``ModelStreamInfer``
(one request, its responses until Triton's empty final one), a plain model through ``ModelInfer``. No
thread is held while a stream runs; the caller going away (the consumer closing the iterator, or its task
being cancelled) cancels the call, and Triton cancels the request with it.

The channel options and TLS are ``channel``'s; the channel itself is one per event loop, since an aio
channel belongs to the loop it was made on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from service.errors import BadRequest, GatewayError, TritonTimeout
from service.protocol.codecs import from_raw_bytes, raw_buffer
from service.protocol.tensors import Tensor
from service.request_context import current_request_id
from service.settings import Settings
from service.triton.channel import _CHANNEL_OPTIONS, tls_credentials
from service.triton.deadline import Deadline
from service.triton.failures import translate
from service.triton.infer_request import set_parameters
from service.triton.protos import service_pb2, service_pb2_grpc
from service.triton.scrub import scrub

_FINAL = "triton_final_response"


@dataclass(frozen=True, slots=True)
class Generated:
    """One response of a generation: which model answered, and its output tensors."""

    model_name: str
    model_version: str
    outputs: list[Tensor]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """How long a stream may wait for its next response (``idle``) and run in all (``total``), seconds."""

    idle: float
    total: float


class StreamClient:
    """Generation calls to one Triton over an aio channel of the current event loop."""

    def __init__(self, url: str, credentials: grpc.ChannelCredentials | None, server_name: str) -> None:
        self._url = url
        self._host = url.rsplit(":", 1)[0]
        self._credentials = credentials
        self._options: list[tuple[str, Any]] = [*_CHANNEL_OPTIONS]
        if server_name:
            self._options.append(("grpc.ssl_target_name_override", server_name))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stub: Any = None

    def _stub_for_loop(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            channel = (
                aio.insecure_channel(self._url, options=self._options)
                if self._credentials is None
                else aio.secure_channel(self._url, self._credentials, options=self._options)
            )
            self._loop, self._stub = loop, service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return self._stub

    async def ready_models(self, timeout: float) -> list[str]:
        """The names of the models Triton has loaded and ready, sorted."""
        request = service_pb2.RepositoryIndexRequest(ready=True)
        try:
            index = await self._stub_for_loop().RepositoryIndex(request, timeout=timeout)
        except grpc.RpcError as error:
            raise self._failure(error, Deadline(timeout), ("", ""), StreamLimits(timeout, timeout)) from None
        return sorted({model.name for model in index.models if model.state == "READY"})

    async def generate(
        self,
        model: str,
        version: str,
        inputs: Sequence[Tensor],
        parameters: Mapping[str, Any],
        *,
        decoupled: bool,
        limits: StreamLimits,
    ) -> AsyncIterator[Generated]:
        """The model's responses as they come; :class:`GatewayError` for Triton's failures and timeouts."""
        request = service_pb2.ModelInferRequest(
            model_name=model, model_version=version, id=current_request_id()
        )
        set_parameters(request, parameters)
        for tensor in inputs:
            entry = request.inputs.add(name=tensor.name, datatype=tensor.datatype)
            entry.shape.extend(tensor.shape)
            request.raw_input_contents.append(bytes(raw_buffer(tensor.array, tensor.datatype)))
        stub = self._stub_for_loop()
        deadline = Deadline(limits.total)
        key = (model, version)
        if not decoupled:
            try:
                response = await stub.ModelInfer(request, timeout=min(limits.idle, limits.total))
            except grpc.RpcError as error:
                raise self._failure(error, deadline, key, limits) from None
            yield _generated(response)
            return
        request.parameters["triton_enable_empty_final_response"].bool_param = True
        call = stub.ModelStreamInfer(timeout=limits.total)
        try:
            await call.write(request)
            while True:
                try:
                    message = await asyncio.wait_for(call.read(), limits.idle)
                except TimeoutError:
                    raise TritonTimeout(
                        f"the model sent nothing for {limits.idle:.1f} s (the stream's idle limit)"
                    ) from None
                if message is aio.EOF:
                    raise TritonTimeout("Triton ended the stream before the model's final response")
                if message.error_message:
                    # A stream's error carries no status; Triton's HTTP generate answers these 400.
                    raise BadRequest(scrub(message.error_message, self._url, self._host))
                response = message.infer_response
                if response.outputs:
                    yield _generated(response)
                if _FINAL in response.parameters and response.parameters[_FINAL].bool_param:
                    return
        except grpc.RpcError as error:
            raise self._failure(error, deadline, key, limits) from None
        finally:
            # Done, failed, or abandoned by its caller: nothing more is read, so Triton stops the request.
            call.cancel()

    def _failure(
        self, error: grpc.RpcError, deadline: Deadline, model: tuple[str, str], limits: StreamLimits
    ) -> GatewayError:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return TritonTimeout(f"the stream ran past its {limits.total:.1f} s limit")
        return translate(
            error, deadline, model, url=self._url, host=self._host, tls=self._credentials is not None
        )


def _generated(response: Any) -> Generated:
    outputs = [
        Tensor(
            out.name, out.datatype, from_raw_bytes(raw, out.datatype, out.shape, f"Triton output {out.name}")
        )
        for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    ]
    return Generated(response.model_name, response.model_version, outputs)


_clients: dict[tuple[str, bool, str, str], StreamClient] = {}


def get_stream_client(settings: Settings) -> StreamClient:
    """The process's generation client for the configured Triton."""
    key = (
        settings.triton_grpc_url,
        settings.triton_grpc_tls,
        settings.triton_grpc_tls_ca,
        settings.triton_grpc_tls_server_name,
    )
    client = _clients.get(key)
    if client is None:
        credentials = tls_credentials(settings.triton_grpc_tls_ca) if settings.triton_grpc_tls else None
        client = _clients[key] = StreamClient(
            settings.triton_grpc_url, credentials, settings.triton_grpc_tls_server_name
        )
    return client
