"""What one request did, gathered while it runs (by the middleware, the data plane and the Triton client)
and written once when its answer has been sent."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from service.observability.xray import Subsegment

# Triton error kind -> the metric that counts it (the alarmable names, shared with deploy/).
ERROR_METRICS = {
    "unavailable": "TritonUnavailable",
    "deadline": "TritonDeadline",
    "rejected": "TritonRejected",
    "upstream": "TritonUpstreamError",
}


@dataclass(slots=True)
class RequestObservation:
    """One request's facts. Fan-out threads add to it at once: ``lock`` guards their updates."""

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
    api_key_id: str = ""
    # A generation's first and latest token (perf_counter), and how many tokens it sent.
    first_token: float = 0.0
    last_token: float = 0.0
    tokens_out: int = 0
    segment: Subsegment | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def generation_figures(observation: RequestObservation) -> dict[str, float]:
    """A generation's time to first token (ms), tokens out and decode rate (tokens/s between the first
    token and the last); empty for a request that generated nothing."""
    if not observation.first_token:
        return {}
    figures = {
        "ttft_ms": round((observation.first_token - observation.began) * 1000, 3),
        "tokens_out": float(observation.tokens_out),
    }
    span = observation.last_token - observation.first_token
    if observation.tokens_out > 1 and span > 0:
        figures["tokens_per_s"] = round((observation.tokens_out - 1) / span, 3)
    return figures


@dataclass(frozen=True, slots=True)
class Finished:
    """How the request ended: its status, route template, gateway latency and whether it was a cold start."""

    status: int
    route: str
    ms: float
    cold: bool

    @property
    def status_class(self) -> str:
        """``2xx``, ``4xx``, ``5xx``..."""
        return f"{self.status // 100}xx"
