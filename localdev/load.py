"""Bounded open-loop load on the gateways: requests start on a schedule, whatever the answers do.

Open loop, as independent callers are: a slow or shed answer does not slow the next request down (a
closed loop of clients retrying at once would measure the clients, not the fleet). Bounded in count
(``rate * seconds``) and in time (each request's ``timeout``), so a hung fleet ends a run, never hangs it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: when it started (seconds from the run's start), how long it took, what came back."""

    started: float
    seconds: float
    status: int  # 0: no HTTP answer (timeout, connection error)
    error: str  # the answer's "error" field, or the client-side failure
    retry_after: str | None

    @property
    def ok(self) -> bool:
        """A 200."""
        return self.status == 200

    def in_flight_at(self, moment: float) -> bool:
        """Whether the request was running at ``moment`` (seconds from the run's start)."""
        return self.started <= moment <= self.started + self.seconds


def sleep_body(value: int, model: str = "sleep_model") -> dict[str, Any]:
    """A /infer body for the fleet's sleep models (X [1, 1] INT32)."""
    return {"model": model, "inputs": [{"name": "X", "datatype": "INT32", "shape": [1, 1], "data": [value]}]}


async def open_loop(
    urls: Sequence[str],
    *,
    rate: float,
    seconds: float,
    body: Callable[[int], dict[str, Any]] = sleep_body,
    path: str = "/infer",
    timeout: float = 15.0,
    at: Sequence[tuple[float, Callable[[], Any]]] = (),
) -> list[Outcome]:
    """Send ``rate`` requests per second for ``seconds`` (round-robin over ``urls``) and return every
    outcome in start order. ``at``: (second, action) pairs run in a thread during the run, e.g. a scale-out
    or a kill, so the load keeps its schedule while they take their time."""
    count = round(rate * seconds)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        began = time.monotonic()

        async def one(index: int, url: str) -> Outcome:
            start = time.monotonic()
            try:
                response = await client.post(f"{url}{path}", json=body(index))
                error = "" if response.status_code == 200 else str(response.json().get("error", ""))
                status, retry_after = response.status_code, response.headers.get("retry-after")
            except (httpx.HTTPError, ValueError) as exc:
                status, error, retry_after = 0, f"{type(exc).__name__}: {exc}", None
            return Outcome(start - began, time.monotonic() - start, status, error, retry_after)

        async def action(moment: float, run: Callable[[], Any]) -> None:
            await asyncio.sleep(max(began + moment - time.monotonic(), 0))
            await asyncio.to_thread(run)

        actions = [asyncio.create_task(action(moment, run)) for moment, run in at]
        tasks = []
        for index, url in zip(range(count), itertools.cycle(urls), strict=False):
            await asyncio.sleep(max(began + index / rate - time.monotonic(), 0))
            tasks.append(asyncio.create_task(one(index, url)))
        outcomes = await asyncio.gather(*tasks)
        await asyncio.gather(*actions)
    return list(outcomes)


def run_load(urls: Sequence[str], **kwargs: Any) -> list[Outcome]:
    """:func:`open_loop` from synchronous code."""
    return asyncio.run(open_loop(urls, **kwargs))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
