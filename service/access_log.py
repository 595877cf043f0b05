"""The ASGI edge of observability: sets the request's id (API Gateway's, else a random one), counts the
bytes in and out, and hands the finished request to ``service.observability`` for its metrics, its one
access record and its trace subsegment."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import observability
from service.request_context import set_request_id


class AccessLogMiddleware:
    """Observes every HTTP request as its answer is sent (or when the app failed before it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api_request_id = _api_request_id(scope)
        observation = observability.start_request(
            scope["method"],
            scope["path"],
            set_request_id(api_request_id),
            api_request_id or "",
            getattr(scope.get("aws.context"), "aws_request_id", "") or "",
            _header(scope, b"x-amzn-trace-id"),
            _api_key_id(scope),
        )
        status = 500
        bytes_in = bytes_out = 0
        finished = False

        def finish() -> None:
            nonlocal finished
            if not finished:
                finished = True
                observability.finish_request(observation, status, _route(scope), bytes_in, bytes_out)

        async def receive_and_count() -> Message:
            nonlocal bytes_in
            message = await receive()
            bytes_in += len(message.get("body", b""))
            return message

        async def send_and_note(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
                if not message.get("more_body", False):
                    # Written before the last byte goes out, so a caller holding the answer knows the
                    # lines are there (the server adds microseconds after this, not milliseconds).
                    finish()
            await send(message)

        try:
            await self.app(scope, receive_and_count, send_and_note)
        finally:
            finish()  # the app failed before it answered, or answered without a body message


def _header(scope: Scope, name: bytes) -> str:
    """The first value of header ``name`` (lower-case), or ``""``."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _route(scope: Scope) -> str:
    """The matched route's template (``/v2/models/{model}/infer``), or ``""`` when no route matched.

    Not the path: a metric dimension must stay low-cardinality, and model names or unknown paths would each
    make a new one. Rebuilt from the path and its parameters, because a route inside an included router
    knows only its own part of the template."""
    if scope.get("route") is None:
        return ""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    segments = path.removeprefix(root).split("/") if root and path.startswith(root) else path.split("/")
    params: dict[str, Any] = scope.get("path_params") or {}
    # Right to left, each parameter takes the last segment still holding its value: a model named like a
    # literal segment ("models") is told apart from the literal before it.
    taken: set[int] = set()
    for name, value in reversed(params.items()):
        for i in range(len(segments) - 1, -1, -1):
            if i not in taken and segments[i] == str(value):
                segments[i] = f"{{{name}}}"
                taken.add(i)
                break
    return "/".join(segments)


def _api_request_id(scope: Scope) -> str | None:
    event = scope.get("aws.event")
    if isinstance(event, dict):
        request_id = (event.get("requestContext") or {}).get("requestId")
        return request_id if isinstance(request_id, str) else None
    return None


def _api_key_id(scope: Scope) -> str:
    # API Gateway names the key it checked (its id, not the key) in the event's identity.
    event = scope.get("aws.event")
    if isinstance(event, dict):
        identity = (event.get("requestContext") or {}).get("identity") or {}
        key_id = identity.get("apiKeyId") if isinstance(identity, dict) else None
        return key_id if isinstance(key_id, str) else ""
    return ""
