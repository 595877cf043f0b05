"""The bench's uvicorn anchor: a bare ASGI app that reads the whole request body and answers its length.

What uvicorn (httptools) and the client cost for a body with no gateway behind them, in the same run as the
gateway's uvicorn rows: ``uvicorn echo_app:app --app-dir bench``."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(size).encode()})
