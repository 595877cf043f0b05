"""One log record per request: method, path, status and duration, plus API Gateway's request id, so a
Lambda log line can be joined with the API's access log (the Lambda runtime adds its own requestId)."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.request_context import set_request_id

log = logging.getLogger("service.access")


class AccessLogMiddleware:
    """Logs every HTTP request at INFO when its answer has been sent (or the app failed before it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        set_request_id(_api_request_id(scope))

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if log.isEnabledFor(logging.INFO):
                _record(scope, status, (time.perf_counter() - began) * 1000)


def _record(scope: Scope, status: int, milliseconds: float) -> None:
    fields: dict[str, Any] = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(milliseconds, 2),
    }
    api_request_id = _api_request_id(scope)
    if api_request_id is not None:
        fields["api_request_id"] = api_request_id
    log.info("%s %s %d %.1f ms", fields["method"], fields["path"], status, milliseconds, extra=fields)


def _api_request_id(scope: Scope) -> str | None:
    event = scope.get("aws.event")
    if isinstance(event, dict):
        request_id = (event.get("requestContext") or {}).get("requestId")
        return request_id if isinstance(request_id, str) else None
    return None
