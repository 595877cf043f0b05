"""The time one request may still spend on Triton calls, and the timeout error when it runs out."""

from __future__ import annotations

import time

from service.errors import TritonTimeout

# A call given this share of the request's budget timed out on Triton; with less, the time went elsewhere.
_MOST_OF_THE_BUDGET = 0.9


class Deadline:
    """The time one request may still spend on Triton calls."""

    def __init__(self, seconds: float) -> None:
        self.budget = seconds
        self._expires = time.monotonic() + seconds
        self._given = seconds  # what the latest Triton call was given

    def remaining(self) -> float:
        """Seconds left; raises :class:`TritonTimeout` once none are (Triton is then not called at all)."""
        left = self.seconds_left()
        if left <= 0:
            # The time went before this call (image decoding, earlier calls): Triton was not the slow part.
            raise TritonTimeout(
                f"the request's deadline of {self.budget:.1f} s passed before Triton was called"
            )
        self._given = left
        return left

    def missed(self) -> TritonTimeout:
        """The error for a Triton call that did not answer in the time :meth:`remaining` gave it."""
        given = self._given
        if given >= self.budget * _MOST_OF_THE_BUDGET:
            return TritonTimeout(f"Triton did not answer within the {self.budget:.1f} s deadline")
        return TritonTimeout(
            f"the request's deadline of {self.budget:.1f} s passed: Triton did not answer in the "
            f"{given:.2f} s that were left of it"
        )

    def seconds_left(self) -> float:
        """Seconds left, 0 once none are (never raises)."""
        return max(self._expires - time.monotonic(), 0.0)
