"""The gateway's error types: each maps to one HTTP status and renders as ``{"error": "<message>"}``.

Raised anywhere below the routes; rendered once, by the handlers that ``service.app`` installs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar


class GatewayError(Exception):
    """Base of every error the gateway answers deliberately; ``status`` is its HTTP status."""

    status: ClassVar[int] = 500

    def __init__(self, message: str, headers: Mapping[str, str] | None = None, detail: str = "") -> None:
        """``message`` is answered to the caller; ``detail`` (upstream text, addresses) goes to the log."""
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        self.detail = detail


class BadRequest(GatewayError):
    """The request is malformed or does not fit the model (names the field)."""

    status = 400


class NotReady(GatewayError):
    """The v2 health routes' "no": Triton, or the model, is not live/ready (400, as Triton answers)."""

    status = 400


class ModelNotFound(GatewayError):
    """The model (or version) is not served here: unknown to Triton or not on the allow-list."""

    status = 404


class PayloadTooLarge(GatewayError):
    """The body is over the configured limit."""

    status = 413


class UnsupportedMediaType(GatewayError):
    """The body's content type is not one this route reads."""

    status = 415


class ClientClosedRequest(GatewayError):
    """The client went away before its request was read: no answer can reach it (nginx's 499)."""

    status = 499


class UpstreamError(GatewayError):
    """Triton answered with an error that is not the caller's fault."""

    status = 502


class TritonUnavailable(GatewayError):
    """Triton cannot be reached, or is not ready to serve."""

    status = 503


class TritonRejected(TritonUnavailable):
    """Triton shed the request: its queue is full or it is out of resources (overload, not an outage)."""


class TritonTimeout(GatewayError):
    """Triton did not answer within the request's deadline."""

    status = 504


def describe_validation_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line per pydantic error, each led by the dotted path of the field, e.g. ``inputs[0].shape``."""
    lines = []
    for error in errors:
        where = _field_path(error.get("loc", ()))
        message = str(error.get("msg", "invalid value"))
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines) or "invalid request"


def _field_path(loc: Sequence[Any]) -> str:
    path = ""
    for part in loc:
        # FastAPI prefixes "body"/"query"; pydantic adds the tag of a union member. Neither names a field.
        if part in ("body", "query", "path", "header") and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
