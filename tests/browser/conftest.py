"""Headless Chromium (Debian's ``chromium``, driven by Playwright: its own browser download is never used),
and the gateway served two ways for it: under uvicorn, and as the real Lambda handler behind a tiny HTTP
adapter that builds API Gateway REST events, under the ``/api`` stage as deployed."""

from __future__ import annotations

import asyncio
import base64
import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway
from tests.lambda_events import LambdaContext, load_event

CHROMIUM = Path("/usr/bin/chromium")
STAGE = "api"


# Module scope, not session: Playwright's sync API keeps an asyncio loop running on the main thread while it
# is open, and Mangum (tests/lambda, later in the run) must start its own there.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless (./dev.sh installs it when root and missing)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (./dev.sh test does, as root)")
    # --no-sandbox: the suite may run as root (CI does), where Chromium's sandbox refuses to start.
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def gateway_url(triton: TritonServer) -> Iterator[str]:
    """The gateway under uvicorn in front of the session's Triton."""
    with serve_gateway(Settings(triton_grpc_url=triton.grpc_url)) as url:
        yield url


@pytest.fixture(scope="session")
def lambda_handler(triton: TritonServer) -> Iterator[Callable[..., dict[str, Any]]]:
    """``service.lambda_handler.handler``, imported as a cold start would, configured by the environment."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TRITON_GRPC_URL", triton.grpc_url)
    for name in [m for m in sys.modules if m in ("service.app", "service.lambda_handler")]:
        del sys.modules[name]
    from service import settings

    settings.get_settings.cache_clear()
    yield importlib.import_module("service.lambda_handler").handler
    patch.undo()
    settings.get_settings.cache_clear()


def rest_event(method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The REST proxy event API Gateway sends for a request to ``/<stage>/...`` (binary media types */*)."""
    parts = urlsplit(url)
    event = load_event("docs")
    event["httpMethod"] = method
    event["path"] = parts.path.removeprefix(f"/{STAGE}") or "/"
    event["resource"] = "/{proxy+}"
    event["pathParameters"] = {"proxy": event["path"].lstrip("/")}
    event["requestContext"].update(path=parts.path, stage=STAGE, httpMethod=method)
    event["headers"] = dict(headers)
    event["multiValueHeaders"] = {name: [value] for name, value in headers.items()}
    query = parse_qs(parts.query, keep_blank_values=True)
    event["queryStringParameters"] = {k: v[-1] for k, v in query.items()} or None
    event["multiValueQueryStringParameters"] = query or None
    # With binary media types */*, API Gateway hands every body over base64-encoded.
    event["body"] = base64.b64encode(body).decode() if body else None
    event["isBase64Encoded"] = bool(body)
    return event


@pytest.fixture(scope="session")
def api_gateway_url(lambda_handler: Callable[..., dict[str, Any]]) -> Iterator[str]:
    """``http://127.0.0.1:PORT/api``: each request becomes a REST event for the Lambda handler."""

    class Adapter(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            if not self.path.startswith(f"/{STAGE}/"):
                # What API Gateway answers for a path outside the stage.
                self._answer(403, {"content-type": "application/json"}, b'{"message":"Forbidden"}')
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            event = rest_event(self.command, self.path, dict(self.headers.items()), body)
            response = lambda_handler(event, LambdaContext())
            raw = response.get("body") or ""
            data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
            headers = dict(response.get("headers") or {})
            for name, values in (response.get("multiValueHeaders") or {}).items():
                headers[name] = values[-1]
            self._answer(response["statusCode"], headers, data)

        def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    # One request at a time, as one Lambda instance takes them, on a thread with the event loop Mangum runs.
    server = HTTPServer(("127.0.0.1", 0), Adapter)

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server.serve_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="api-gateway-adapter", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{STAGE}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
