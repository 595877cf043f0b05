"""What of Triton's own text may reach a 4xx answer: its first line, without addresses or file paths."""

from __future__ import annotations

import pytest

from service.triton.scrub import scrub


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "[request id: <id_unknown>] unexpected shape for input 'x' for model 'm'. Expected [3], got [4]",
            "[request id: <id_unknown>] unexpected shape for input 'x' for model 'm'. Expected [3], got [4]",
        ),
        (
            "failed to load '/opt/tritonserver/models/m/1/model.onnx' from ipv4:10.0.3.7:8001\nAt: x.py(3)",
            "failed to load '<path>' from triton",
        ),
        ("triton-internal.example:8001 refused: C:\\models\\m\\1", "triton refused: <path>"),
        ("connect to ipv6:[fd00::12]:8001 failed; shape [3]", "connect to triton failed; shape [3]"),
        ("", "Triton refused the request"),
        ("x" * 1000, "x" * 297 + "..."),
    ],
    ids=["plain", "path-address-stack", "host-windows-path", "ipv6", "empty", "long"],
)
def test_invalid_argument_text_is_scrubbed(text, want):
    assert scrub(text, "triton-internal.example:8001", "triton-internal.example") == want
