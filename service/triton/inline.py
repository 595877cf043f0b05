"""Whether the client's calls block inline or are awaited: one API (coroutines) for both.

Under uvicorn a call is awaited on an asyncio channel, so one process holds hundreds of calls open without a
thread each. A Lambda handles one event at a time on a loop nobody else waits on: there the blocking call,
made inline, is the cheaper one (bench/bench.py measures both), so the Lambda handler runs each invocation
inside :func:`inline_calls`. A context variable, not a process-wide switch: Mangum runs each event in a task,
which copies the context it was created in, and a test process may serve both ways."""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_INLINE: ContextVar[bool] = ContextVar("triton_calls_inline", default=False)


@contextmanager
def inline_calls() -> Iterator[None]:
    """Within this block (and the tasks and threads started in its context), calls block inline."""
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)


def calls_inline() -> bool:
    """Whether this context's calls block inline."""
    return _INLINE.get()


def finish_inline(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits (a client call made inline), run without a loop: from a
    fan-out thread, where there is none."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a call made inline waited on the event loop")
