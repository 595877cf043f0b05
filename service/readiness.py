"""Whether Triton can serve the default model, asked once and reused for a second.

``/health`` is keyless and outside the usage plan: without this, every probe of a flood would be a Triton
call. One ``ModelReady`` call answers both questions a caller has (does Triton answer, can it run the default
model); concurrent probes wait for the one in flight instead of asking again."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal

from service.errors import GatewayError, TritonTimeout
from service.triton import Deadline, TritonClient

log = logging.getLogger("service.health")

TritonState = Literal["ready", "not ready", "unavailable", "timeout"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """One probe's finding: Triton's state, whether the default model is ready, and why not."""

    triton: TritonState
    model_ready: bool | None = None
    error: str | None = None

    @property
    def healthy(self) -> bool:
        """Triton answered and can run the default model."""
        return self.triton == "ready"


class ReadinessCache:
    """The latest :class:`Readiness`, reused for ``ttl`` seconds; at most one probe in flight."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._latest: Readiness | None = None
        self._expires = 0.0

    def get(self, triton: TritonClient, model: str, deadline: Deadline) -> Readiness:
        """The cached finding while it is fresh, else a new probe's."""
        if self._latest is not None and time.monotonic() < self._expires:
            return self._latest
        try:
            waited = self._lock.acquire(timeout=deadline.remaining())
        except TritonTimeout as exc:
            return Readiness("timeout", error=exc.message)
        if not waited:
            # The probe in flight took the whole deadline: the caller gets what it would have got.
            return Readiness(
                "timeout", error=f"Triton did not answer within the {deadline.budget:.1f} s deadline"
            )
        try:
            if self._latest is None or time.monotonic() >= self._expires:
                self._latest = _probe(triton, model, deadline)
                self._expires = time.monotonic() + self._ttl
            return self._latest
        finally:
            self._lock.release()


def _probe(triton: TritonClient, model: str, deadline: Deadline) -> Readiness:
    try:
        if triton.model_ready(model, "", deadline):
            return Readiness("ready", model_ready=True)
        return Readiness(
            "not ready", model_ready=False, error=f"Triton answers, but model {model!r} is not ready"
        )
    except TritonTimeout as exc:
        log.warning("health: %s %s", exc.message, exc.detail)
        return Readiness("timeout", error=exc.message)
    except GatewayError as exc:
        log.warning("health: %s %s", exc.message, exc.detail)
        return Readiness("unavailable", error=exc.message)
