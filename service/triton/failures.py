"""Turning a failed gRPC call into the gateway error it answers with: one translation for every call."""

from __future__ import annotations

import grpc

from service.errors import (
    BadRequest,
    GatewayError,
    ModelNotFound,
    TritonRejected,
    TritonUnavailable,
    UpstreamError,
)
from service.triton.deadline import Deadline
from service.triton.scrub import scrub

# What Triton says when it sheds a request (UNAVAILABLE): its queue is full, or the request waited in it
# past the model's queue timeout. Overload, not an outage: an answer from a live Triton, so never retried,
# and told apart from a broken connection (also UNAVAILABLE).
_SHED_MESSAGES = ("exceeds maximum queue size", "request timeout expired")
# What a Triton shutting down answers a call (it is alive, but serves nothing).
_LEAVING_MESSAGES = ("server not ready", "server exiting")
# gRPC's wording when the TLS handshake to Triton fails on its certificate.
_TLS_FAILURES = ("CERTIFICATE_VERIFY_FAILED", "Hostname Verification", "handshake failed")


def translate(
    error: grpc.RpcError,
    deadline: Deadline,
    model: tuple[str, str] | None,
    *,
    url: str,
    host: str,
    tls: bool,
) -> GatewayError:
    """The gateway error for ``error``, a failed call on ``model`` (None: a server-wide call) to Triton at
    ``url`` (``host``, scrubbed from any text an answer keeps), over TLS when ``tls``."""
    # 5xx answers carry a fixed message per kind; Triton's own text (backend exceptions, file paths,
    # addresses) goes to the log only, through ``detail``.
    code = error.code()
    raw = error.details() or ""
    detail = f"{code.name}: {raw}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        timeout = deadline.missed()
        timeout.detail = detail
        return timeout
    if code == grpc.StatusCode.NOT_FOUND:
        return ModelNotFound(not_served(model) if model else scrub(raw, url, host), detail=detail)
    if shed(error):
        return _shed_answer(deadline, detail)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        if tls and any(word in raw for word in _TLS_FAILURES):
            return TritonUnavailable(
                "Triton is unavailable: its TLS certificate did not verify",
                {"Retry-After": "1"},
                detail="TLS to Triton failed certificate verification (check TRITON_GRPC_TLS_CA and "
                f"TRITON_GRPC_TLS_SERVER_NAME): {detail}",
            )
        return TritonUnavailable("Triton is unavailable; try again shortly", {"Retry-After": "1"}, detail)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return TritonRejected("Triton is overloaded; try again shortly", {"Retry-After": "1"}, detail)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadRequest(scrub(raw, url, host), detail=detail)
    return UpstreamError(f"Triton failed to run the request ({code.name})", detail=detail)


def shed(error: grpc.RpcError) -> bool:
    """Whether Triton refused the request for overload (it answered: the channel is alive)."""
    details = (error.details() or "").lower()
    return error.code() == grpc.StatusCode.UNAVAILABLE and any(m in details for m in _SHED_MESSAGES)


def leaving(error: grpc.RpcError) -> bool:
    """Whether a Triton answered that it cannot serve now: shutting down ("Server not ready", "Server
    exiting") or without the model ("unknown model")."""
    details = (error.details() or "").lower()
    if error.code() == grpc.StatusCode.NOT_FOUND:
        return True
    return error.code() == grpc.StatusCode.UNAVAILABLE and any(m in details for m in _LEAVING_MESSAGES)


def not_served(model: tuple[str, str]) -> str:
    """The 404 message for a ``(name, version)`` Triton does not serve."""
    name, version = model
    return (
        f"model {name!r} version {version!r} is not served here"
        if version
        else f"model {name!r} is not served here"
    )


def _shed_answer(deadline: Deadline, detail: str) -> GatewayError:
    # The queue timeout we passed may be the caller's remaining deadline: then it is the deadline that
    # passed, not Triton that is overloaded.
    if deadline.seconds_left() < 0.005:
        timeout = deadline.missed()
        timeout.detail = detail
        return timeout
    return TritonRejected("Triton is overloaded; try again shortly", {"Retry-After": "1"}, detail)
