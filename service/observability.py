"""What each request leaves behind: CloudWatch metrics (EMF on stdout), one JSON access record, and X-Ray
subsegments around its Triton calls. One place: the app's middleware opens and closes the request
(``start_request``/``finish_request``), the Triton client wraps each call (``triton_call``); codecs never
call it.

Metrics go through Powertools' EMF provider (names, units, the document) and are written once per request:
under Lambda that is once per invocation, on stdout, no network call; under uvicorn the same lines, so one
code path serves both and the CloudWatch agent (or a test) can read them. The access record is formatted by
Powertools' JSON log formatter, which adds the X-Ray trace id of the invocation."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from service import xray
from service.errors import (
    GatewayError,
    ModelNotFound,
    TritonRejected,
    TritonTimeout,
    TritonUnavailable,
    UpstreamError,
)
from service.settings import Settings

log = logging.getLogger("service.access")

# The per-route/model breakdowns carry only these metrics: every metric in an EMF directive is published
# under each of its dimension sets, and each (metric, dimensions) pair is a billed custom metric.
_BY_STATUS = ("Requests", "Latency")
_BY_MODEL = (
    "Requests",
    "Latency",
    "TritonLatency",
    "TritonUnavailable",
    "TritonDeadline",
    "TritonRejected",
    "TritonUpstreamError",
)
# Error kind -> the metric that counts it.
_ERROR_METRICS = {
    "unavailable": "TritonUnavailable",
    "deadline": "TritonDeadline",
    "rejected": "TritonRejected",
    "upstream": "TritonUpstreamError",
}


@dataclass(slots=True)
class _Config:
    namespace: str = "TritonGateway"
    service: str = "triton-gateway"
    metrics: bool = True


_config = _Config()
# Provisioned concurrency initialises ahead of traffic: its first request is not a cold start.
_cold = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "provisioned-concurrency"


def configure(settings: Settings) -> None:
    """Take the metric namespace, service name and switches from ``settings`` (the app does, at creation)."""
    global _config
    _config = _Config(
        settings.powertools_metrics_namespace,
        settings.powertools_service_name,
        not settings.powertools_metrics_disabled,
    )
    formatter = LambdaPowertoolsFormatter(service=settings.powertools_service_name, utc=True)
    log.handlers = [_StdoutHandler(formatter)]
    # The record is written once, by this handler: not again by the Lambda runtime's or uvicorn's root one.
    log.propagate = False


@dataclass(slots=True)
class RequestObservation:
    """What one request did, gathered as it runs and written when its answer has been sent."""

    method: str
    path: str
    request_id: str
    api_request_id: str = ""
    lambda_request_id: str = ""
    began: float = field(default_factory=time.perf_counter)
    model: str = ""
    version: str = ""
    infer_ms: list[float] = field(default_factory=list)
    triton_ms: float = 0.0
    triton_calls: int = 0
    errors: set[str] = field(default_factory=set)
    bytes_in: int = 0
    bytes_out: int = 0
    images: int = 0
    deadline_s: float = 0.0
    segment: xray.Subsegment | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_current: ContextVar[RequestObservation | None] = ContextVar("observation", default=None)


def start_request(
    method: str, path: str, request_id: str, api_request_id: str = "", lambda_request_id: str = ""
) -> RequestObservation:
    """Begin observing the request now being served (the current context's)."""
    observation = RequestObservation(method, path, request_id, api_request_id, lambda_request_id)
    context = xray.trace_context()
    if context is not None:
        segment = xray.Subsegment("gateway", *context, namespace="")
        segment.annotations["request_id"] = request_id
        observation.segment = segment
    _current.set(observation)
    return observation


def note_model(name: str, version: str = "") -> None:
    """The model (and version, when known) the current request runs; the last answer's version wins."""
    observation = _current.get()
    if observation is not None:
        observation.model = name
        observation.version = version or observation.version


def note_images(count: int) -> None:
    """``count`` more images decoded for the current request."""
    observation = _current.get()
    if observation is not None:
        with observation.lock:
            observation.images += count


class Budget(Protocol):
    """A request deadline: its whole budget, and what is left of it (raising once nothing is)."""

    budget: float

    def remaining(self) -> float: ...


@contextmanager
def triton_call(method: str, model: tuple[str, str] | None, deadline: Budget) -> Iterator[None]:
    """Time one Triton RPC (retries included), count its failure by kind, and trace it as a subsegment."""
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
        ms = (time.perf_counter() - began) * 1000
        if observation is not None:
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
        if outcome in _ERROR_METRICS:
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
    segment.fault = outcome in _ERROR_METRICS
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


def finish_request(
    observation: RequestObservation, status: int, route: str, bytes_in: int, bytes_out: int
) -> None:
    """Write the request's metrics and access record, and close its trace subsegment."""
    global _cold
    ms = (time.perf_counter() - observation.began) * 1000
    observation.bytes_in, observation.bytes_out = bytes_in, bytes_out
    cold, _cold = _cold, False
    status_class = f"{status // 100}xx"
    if _config.metrics:
        _write_metrics(observation, ms, status_class, route or "unmatched", cold)
    if log.isEnabledFor(logging.INFO):
        _write_record(observation, status, route, ms, cold)
    if observation.segment is not None:
        segment = observation.segment
        segment.annotations.update(status=status, route=route or "unmatched", model=observation.model)
        if observation.deadline_s:
            segment.annotations["deadline_budget_s"] = round(observation.deadline_s, 3)
        segment.error, segment.throttle, segment.fault = 400 <= status < 500, status == 429, status >= 500
        xray.send(segment)


def _write_metrics(
    observation: RequestObservation, ms: float, status_class: str, route: str, cold: bool
) -> None:
    emf = AmazonCloudWatchEMFProvider(namespace=_config.namespace, service=_config.service)
    emf.add_metric("Requests", "Count", 1)
    emf.add_metric("Latency", "Milliseconds", round(ms, 3))
    for value in observation.infer_ms:
        emf.add_metric("TritonLatency", "Milliseconds", round(value, 3))
    if observation.triton_calls:
        for kind, name in _ERROR_METRICS.items():
            emf.add_metric(name, "Count", int(kind in observation.errors))
    emf.add_metric("RequestBytes", "Bytes", observation.bytes_in)
    emf.add_metric("ResponseBytes", "Bytes", observation.bytes_out)
    if observation.images:
        emf.add_metric("ImagesDecoded", "Count", observation.images)
    if cold:
        emf.add_metric("ColdStart", "Count", 1)
    # Powertools serialises the aggregate (dimension ``service`` only); the breakdowns are further
    # directives of the same document over a subset of its metrics.
    document: dict[str, Any] = dict(emf.serialize_metric_set())
    directives: list[dict[str, Any]] = document["_aws"]["CloudWatchMetrics"]
    definitions = {metric["Name"]: metric for metric in directives[0]["Metrics"]}
    document.update(status_class=status_class, route=route)
    directives.append(
        {
            "Namespace": _config.namespace,
            "Dimensions": [["service", "status_class"], ["service", "route", "status_class"]],
            "Metrics": [definitions[name] for name in _BY_STATUS],
        }
    )
    if observation.model:
        document["model"] = observation.model
        directives.append(
            {
                "Namespace": _config.namespace,
                "Dimensions": [["service", "model"]],
                "Metrics": [definitions[name] for name in _BY_MODEL if name in definitions],
            }
        )
    # Searchable in the log, never a dimension.
    document["request_id"] = observation.request_id
    sys.stdout.write(orjson.dumps(document).decode() + "\n")
    sys.stdout.flush()


def _write_record(observation: RequestObservation, status: int, route: str, ms: float, cold: bool) -> None:
    fields: dict[str, Any] = {
        "request_id": observation.request_id,
        "method": observation.method,
        "path": observation.path,
        "route": route,
        "status": status,
        "duration_ms": round(ms, 2),
        "bytes_in": observation.bytes_in,
        "bytes_out": observation.bytes_out,
    }
    if observation.api_request_id:
        fields["api_request_id"] = observation.api_request_id
    if observation.lambda_request_id:
        fields["lambda_request_id"] = observation.lambda_request_id
    if observation.model:
        fields.update(model=observation.model, version=observation.version)
    if observation.triton_calls:
        fields.update(triton_ms=round(observation.triton_ms, 2), triton_calls=observation.triton_calls)
    if observation.errors:
        fields["triton_errors"] = sorted(observation.errors)
    if observation.images:
        fields["images"] = observation.images
    if cold:
        fields["cold_start"] = True
    log.info("%s %s %d %.1f ms", observation.method, observation.path, status, ms, extra=fields)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is when a record is written (a test's capture, the runtime's)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass
