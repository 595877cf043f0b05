"""When the gateway traces and where it sends subsegments, read from the environment as Lambda sets it."""

from __future__ import annotations

import pytest

from service.observability import xray

HEADER = "Root=1-6753c3a1-0f1e2d3c4b5a69788796a5b4;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:0"


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        ("169.254.79.129:2000", ("169.254.79.129", 2000)),  # what the Lambda service sets
        ("tcp:127.0.0.1:2000 udp:127.0.0.2:2001", ("127.0.0.2", 2001)),  # the SDK's two-address form
        ("", ("127.0.0.1", 2000)),  # the daemon's default
        ("nonsense", ("127.0.0.1", 2000)),
    ],
)
def test_daemon_address(monkeypatch, raw, address):
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", raw)
    assert xray._daemon_address() == address


def test_a_sampled_lambda_invocation_is_traced_under_its_segment(monkeypatch):
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", HEADER)
    assert xray.trace_context() == ("1-6753c3a1-0f1e2d3c4b5a69788796a5b4", "53995c3f42cd8ad8")


@pytest.mark.parametrize(
    ("task_root", "header"),
    [
        (None, HEADER),  # not under Lambda (uvicorn with a stray variable)
        ("/var/task", HEADER.replace("Sampled=1", "Sampled=0")),
        ("/var/task", "Root=1-6753c3a1-0f1e2d3c4b5a69788796a5b4;Sampled=1"),  # no parent to hang from
        ("/var/task", None),
    ],
)
def test_otherwise_nothing_is_traced(monkeypatch, task_root, header):
    for name, value in (("LAMBDA_TASK_ROOT", task_root), ("_X_AMZN_TRACE_ID", header)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert xray.trace_context() is None
