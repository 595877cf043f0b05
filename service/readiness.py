"""Whether Triton can serve the default model, asked once and reused for a second.

``/health`` is keyless and outside the usage plan: without this, every probe of a flood would be a Triton
call. One ``ModelReady`` call answers both questions a caller has (does Triton answer, can it run the default
model); concurrent probes wait for the one in flight instead of asking again."""

from __future__ import annotations

import asyncio
import logging
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
        self._latest: Readiness | None = None
        self._expires = 0.0
        self._probing: asyncio.Task[Readiness] | None = None

    async def get(self, triton: TritonClient, model: str, deadline: Deadline) -> Readiness:
        """The cached finding while it is fresh, else a new probe's (the one in flight, when there is)."""
        if self._latest is not None and time.monotonic() < self._expires:
            return self._latest
        try:
            remaining = deadline.remaining()
        except TritonTimeout as exc:
            return Readiness("timeout", error=exc.message)
        probing = self._probing
        # A probe belongs to the loop it runs on (a test process may run several loops, one at a time).
        if probing is None or probing.get_loop() is not asyncio.get_running_loop():
            probing = self._probing = asyncio.ensure_future(self._refresh(triton, model, deadline))
        try:
            # shield: a caller that stops waiting leaves the probe running for the others.
            return await asyncio.wait_for(asyncio.shield(probing), remaining)
        except TimeoutError:
            # The probe in flight took the whole deadline: the caller gets what it would have got.
            return Readiness(
                "timeout", error=f"Triton did not answer within the {deadline.budget:.1f} s deadline"
            )

    async def _refresh(self, triton: TritonClient, model: str, deadline: Deadline) -> Readiness:
        try:
            self._latest = await _probe(triton, model, deadline)
            self._expires = time.monotonic() + self._ttl
            return self._latest
        finally:
            self._probing = None


async def _probe(triton: TritonClient, model: str, deadline: Deadline) -> Readiness:
    try:
        if await triton.model_ready(model, "", deadline):
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
