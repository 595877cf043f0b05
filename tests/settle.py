"""Reading a counter that Triton updates just after it answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def settled(read: Callable[[], T], want: T, timeout: float = 5.0) -> T:
    """``read()`` again until it gives ``want`` or ``timeout`` passes; the last value, for the test to assert.

    Triton counts a request's statistics when it releases the request, which may be a moment after the
    answer reached us: the count is exact, only its timing is not."""
    ends = time.monotonic() + timeout
    value = read()
    while value != want and time.monotonic() < ends:
        time.sleep(0.02)
        value = read()
    return value
