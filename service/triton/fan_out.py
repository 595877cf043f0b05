"""Running several blocking Triton calls of one request at once (a Lambda's, made inline), on a small shared
pool of threads. Awaited calls need none: they run as tasks on the event loop."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any, TypeVar

T = TypeVar("T")

# Concurrent Triton calls of one request with several images (a model that does not batch).
_FAN_OUT_THREADS = 4


def run_all(call: Callable[..., T], arguments: Sequence[tuple[Any, ...]]) -> list[T]:
    """``call`` once per entry of ``arguments``, concurrently, each in a copy of the current context;
    results in the order of ``arguments``. The first failure is raised; calls not yet started are dropped."""
    pool = _fan_out_pool()
    futures = [pool.submit(_in_context(call), *args) for args in arguments]
    try:
        return [future.result() for future in futures]
    finally:
        for future in futures:
            future.cancel()


def _in_context(call: Callable[..., T]) -> Callable[..., T]:
    """``call``, to run in a copy of the current context (a pool thread would otherwise have an empty one)."""
    return partial(contextvars.copy_context().run, call)


@lru_cache(maxsize=1)
def _fan_out_pool() -> ThreadPoolExecutor:
    # Small: a Lambda has one or two vCPUs, and Triton queues what it cannot run at once anyway.
    return ThreadPoolExecutor(max_workers=_FAN_OUT_THREADS, thread_name_prefix="triton-fan-out")
