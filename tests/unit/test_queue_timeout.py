"""The queue timeout the gateway asks Triton for never outlives the caller nor the model's own."""

from __future__ import annotations

import pytest

from service.triton.infer_request import queue_timeout_us


def config(timeout_us: int, override: bool = True) -> dict[str, object]:
    policy = {"default_timeout_microseconds": timeout_us, "allow_timeout_override": override}
    return {"dynamic_batching": {"default_queue_policy": policy}}


@pytest.mark.parametrize(
    ("model", "remaining", "asked", "want"),
    [
        (config(150_000), 9.5, None, 150_000),  # the model's timeout when the deadline is far
        (config(150_000), 0.04, None, 40_000),  # the deadline's rest when it is nearer
        (config(150_000), 9.5, 5_000, 5_000),  # a caller's own shorter timeout
        (config(150_000), 9.5, 900_000, 150_000),  # ... never a longer one
        (config(0), 2.0, None, 2_000_000),  # 0 = the model has no timeout: the deadline's rest
        (config(150_000, override=False), 9.5, None, None),  # Triton would ignore it: none sent
        ({}, 9.5, None, None),  # no dynamic batcher, no queue policy
        ({"dynamic_batching": {}}, 9.5, None, None),
    ],
)
def test_queue_timeout(model, remaining, asked, want):
    assert queue_timeout_us(model, remaining, asked) == want
