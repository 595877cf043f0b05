"""What each request leaves behind: CloudWatch metrics (``emf``: one EMF line on stdout), one JSON access
record (``record``), and X-Ray subsegments (``xray``) for the request, its pipeline stages and each Triton
call. One place, called by the app's middleware (``start_request``/``finish_request``), the data plane at
its seams (``note_model``, ``note_images``, ``stage``) and the Triton client around each call
(``triton_call``); codecs never call it.

Under Lambda a request is an invocation, so the metrics are flushed once per invocation, on stdout, with no
network call; under uvicorn the same lines are written, so one code path serves both (the CloudWatch agent,
or a test, reads them)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from service.errors import (
    GatewayError,
    ModelNotFound,
    TritonRejected,
    TritonTimeout,
    TritonUnavailable,
    UpstreamError,
)
from service.observability import emf, record, xray
from service.observability.observation import ERROR_METRICS, Finished, RequestObservation
from service.settings import Settings

__all__ = [
    "Budget",
    "RequestObservation",
    "configure",
    "finish_request",
    "note_images",
    "note_model",
    "note_tokens",
    "stage",
    "start_request",
    "triton_call",
]


@dataclass(frozen=True, slots=True)
class _Config:
    namespace: str = "TritonGateway"
    service: str = "triton-gateway"
    metrics: bool = True


_config = _Config()
# Provisioned concurrency initialises ahead of traffic: its first request is not a cold start.
_cold = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "provisioned-concurrency"
_current: ContextVar[RequestObservation | None] = ContextVar("observation", default=None)


def configure(settings: Settings) -> None:
    """Take the metric namespace, service name and switches from ``settings`` (the app does, at creation)."""
    global _config
    _config = _Config(
        settings.powertools_metrics_namespace,
        settings.powertools_service_name,
        not settings.powertools_metrics_disabled,
    )
    record.configure(settings.powertools_service_name)


def start_request(
    method: str,
    path: str,
    request_id: str,
    api_request_id: str = "",
    lambda_request_id: str = "",
    trace_header: str = "",
    api_key_id: str = "",
) -> RequestObservation:
    """Begin observing the request now being served (the current context's); ``trace_header`` is its
    ``X-Amzn-Trace-Id``, which traces it outside Lambda."""
    observation = RequestObservation(method, path, request_id, api_request_id, lambda_request_id)
    observation.api_key_id = api_key_id
    context = xray.trace_context(trace_header)
    if context is not None:
        segment = xray.Subsegment("gateway", *context, namespace="")
        segment.annotations["request_id"] = request_id
        observation.segment = segment
    _current.set(observation)
    return observation


def finish_request(
    observation: RequestObservation, status: int, route: str, bytes_in: int, bytes_out: int
) -> None:
    """Write the request's metrics and access record, and close its trace subsegment."""
    global _cold
    finished = Finished(status, route, (time.perf_counter() - observation.began) * 1000, _cold)
    _cold = False
    observation.bytes_in, observation.bytes_out = bytes_in, bytes_out
    if _config.metrics:
        emf.write(observation, finished, _config.namespace, _config.service)
    if record.enabled():
        record.write(observation, finished)
    segment = observation.segment
    if segment is not None:
        segment.annotations.update(status=status, route=route or "unmatched", model=observation.model)
        if observation.deadline_s:
            segment.annotations["deadline_budget_s"] = round(observation.deadline_s, 3)
        segment.error, segment.throttle, segment.fault = 400 <= status < 500, status == 429, status >= 500
        xray.send(segment)


def note_model(name: str, version: str = "") -> None:
    """The model (and version, once known) the current request runs; Triton's answer names the version."""
    observation = _current.get()
    if observation is not None:
        observation.model = name
        observation.version = version or observation.version


def note_tokens(count: int) -> None:
    """``count`` more tokens generated for the current request, sent now (the first marks its TTFT)."""
    observation = _current.get()
    if observation is not None:
        now = time.perf_counter()
        with observation.lock:
            observation.first_token = observation.first_token or now
            observation.last_token = now
            observation.tokens_out += count


def note_images(count: int) -> None:
    """``count`` more images decoded for the current request."""
    observation = _current.get()
    if observation is not None:
        with observation.lock:
            observation.images += count


@contextmanager
def stage(name: str) -> Iterator[None]:
    """A pipeline stage of the current request (``decode images``...), a subsegment when it is traced."""
    observation = _current.get()
    if observation is None or observation.segment is None:
        yield
        return
    segment = observation.segment.child(name, namespace="")
    try:
        yield
    except Exception as exc:
        segment.error, segment.cause = True, type(exc).__name__
        raise
    finally:
        xray.send(segment)


class Budget(Protocol):
    """A request deadline: its whole budget, and what is left of it (raising once nothing is)."""

    budget: float

    def remaining(self) -> float: ...


@contextmanager
def triton_call(method: str, model: tuple[str, str] | None, deadline: Budget) -> Iterator[None]:
    """Time one Triton RPC (retries included), count its failure by kind, and trace it as a subsegment
    annotated with the model, version, outcome and deadline."""
    observation = _current.get()
    try:
        left = deadline.remaining()
    except GatewayError:
        left = 0.0
    began = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except Exception as exc:
        outcome = _outcome(exc)
        raise
    finally:
        if observation is not None:
            ms = (time.perf_counter() - began) * 1000
            _note_call(observation, method, model, deadline.budget, left, ms, outcome)


def _note_call(
    observation: RequestObservation,
    method: str,
    model: tuple[str, str] | None,
    budget: float,
    left: float,
    ms: float,
    outcome: str,
) -> None:
    with observation.lock:
        observation.triton_calls += 1
        observation.triton_ms += ms
        observation.deadline_s = observation.deadline_s or budget
        if method == "ModelInfer" and outcome == "ok":
            observation.infer_ms.append(ms)
        if outcome in ERROR_METRICS:
            observation.errors.add(outcome)
    if observation.segment is None:
        return
    segment = observation.segment.child(f"Triton {method}")
    segment.start_time = time.time() - ms / 1000
    segment.annotations.update(
        method=method,
        outcome=outcome,
        model=model[0] if model else "",
        version=model[1] if model else "",
        deadline_budget_s=round(budget, 3),
        deadline_left_ms=round(left * 1000, 1),
    )
    segment.fault = outcome in ERROR_METRICS
    segment.throttle = outcome == "rejected"
    segment.error = outcome in ("bad_request", "not_found")
    xray.send(segment)


def _outcome(exc: Exception) -> str:
    # Most specific first: TritonRejected is a TritonUnavailable (both answer 503).
    for kind, outcome in (
        (TritonRejected, "rejected"),
        (TritonUnavailable, "unavailable"),
        (TritonTimeout, "deadline"),
        (UpstreamError, "upstream"),
        (ModelNotFound, "not_found"),
        (GatewayError, "bad_request"),
    ):
        if isinstance(exc, kind):
            return outcome
    return "upstream"
