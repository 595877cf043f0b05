"""The generation pipeline every text route calls (``/v2/.../generate``, ``/v1``): a model already resolved
by the data plane (allow-list, 404 first), its inputs bounded, then the model's responses as they come,
each counted as tokens for the request's observation. It knows neither FastAPI nor a wire format.

A process runs at most ``MAX_STREAMS`` generations at once; past that a request is refused (503,
Retry-After) before it reaches Triton, so a burst of long streams cannot hold every connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from service import observability
from service.dataplane import Model
from service.errors import BadRequest, TritonRejected
from service.protocol.generate import GenerateRequest
from service.settings import Settings
from service.triton.stream import Generated, StreamClient, StreamLimits

# Outputs that say how many tokens a response holds (vLLM's backend, when asked).
TOKEN_COUNT_OUTPUT = "num_output_tokens"

_running = 0


def is_decoupled(model: Model) -> bool:
    """Whether the model answers through a stream of responses (its transaction policy is decoupled)."""
    policy: dict[str, Any] = model.info.config.get("model_transaction_policy") or {}
    return bool(policy.get("decoupled"))


class Generation:
    """Generations for one request's settings and stream client."""

    def __init__(self, settings: Settings, client: StreamClient) -> None:
        self.settings = settings
        self.client = client

    def check_prompt(self, request: GenerateRequest) -> None:
        """400 when the text inputs together are over ``MAX_PROMPT_BYTES``."""
        size = sum(len(item) for t in request.inputs if t.datatype == "BYTES" for item in t.array.reshape(-1))
        if size > self.settings.max_prompt_bytes:
            names = ", ".join(t.name for t in request.inputs if t.datatype == "BYTES")
            raise BadRequest(
                f"{names}: {size} bytes of text, over the {self.settings.max_prompt_bytes}-byte limit"
            )

    async def responses(self, model: Model, request: GenerateRequest) -> AsyncIterator[Generated]:
        """The model's responses, in order, as Triton sends them; the request's tokens are noted as each
        arrives (a ``num_output_tokens`` output counts, else one token a response)."""
        global _running
        self.check_prompt(request)
        if _running >= self.settings.max_streams:
            raise TritonRejected(
                f"the gateway runs {self.settings.max_streams} generations already; try again shortly",
                {"Retry-After": "1"},
            )
        _running += 1
        try:
            limits = StreamLimits(
                self.settings.stream_idle_timeout_seconds, self.settings.stream_timeout_seconds
            )
            async for response in self.client.generate(
                model.name,
                model.version,
                request.inputs,
                request.parameters,
                decoupled=is_decoupled(model),
                limits=limits,
            ):
                observability.note_model(response.model_name, response.model_version)
                observability.note_tokens(_tokens(response))
                yield response
        finally:
            _running -= 1


def _tokens(response: Generated) -> int:
    for tensor in response.outputs:
        if tensor.name == TOKEN_COUNT_OUTPUT and tensor.array.size == 1:
            return int(tensor.array.reshape(-1)[0])
    return 1
