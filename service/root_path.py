"""Finds the path prefix the gateway is served under, so ``/docs`` loads the right ``openapi.json`` and
"Try it out" calls the right URL: the API Gateway stage on an ``execute-api`` URL (read from the Lambda
event, no configuration), or the configured base path of a custom domain mapping."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


class RootPathMiddleware:
    """Sets the ASGI ``root_path`` (and puts it before ``path``, as ASGI expects) for every HTTP request."""

    def __init__(self, app: ASGIApp, api_root_path: str = "") -> None:
        self.app = app
        self.api_root_path = api_root_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = self.api_root_path or stage_prefix(scope.get("aws.event"))
            if prefix:
                scope = dict(scope)
                scope["root_path"] = prefix
                path: str = scope["path"]
                if path != prefix and not path.startswith(prefix + "/"):
                    scope["path"] = prefix + path
        await self.app(scope, receive, send)


def stage_prefix(event: Any) -> str:
    """``/<stage>`` when the caller's URL carried the stage (the default ``execute-api`` URL), else ``""``."""
    if not isinstance(event, dict):
        return ""
    context = event.get("requestContext") or {}
    stage = context.get("stage")
    # REST events keep the URL path as the caller sent it in requestContext.path; HTTP API events in rawPath.
    seen = context.get("path") or event.get("rawPath")
    if not stage or stage == "$default" or not isinstance(seen, str):
        return ""
    prefix = f"/{stage}"
    return prefix if seen == prefix or seen.startswith(prefix + "/") else ""
