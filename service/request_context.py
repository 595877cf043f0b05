"""The id of the request being served, for log records, Triton's request id and error answers.

Set once per request at the edge of the app (API Gateway's request id when there is one); read anywhere
below it. A context variable, so threads started with the request's context see the same id."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("request_id", default="")


def set_request_id(value: str | None) -> str:
    """Make ``value`` (or, when empty, a fresh random id) the current request's id; returns it."""
    request_id = value or uuid.uuid4().hex
    _request_id.set(request_id)
    return request_id


def current_request_id() -> str:
    """The current request's id; empty outside a request."""
    return _request_id.get()


def with_request_id(message: str) -> str:
    """``message`` with the current request's id, for answers whose detail is only in the log."""
    request_id = current_request_id()
    return f"{message} (request id {request_id})" if request_id else message
