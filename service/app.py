"""The FastAPI application: routers, the one error envelope, the OpenAPI document.

``create_app(settings)`` builds it; ``app`` is the process's instance (uvicorn: ``service.app:app``)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from service import observability
from service.access_log import AccessLogMiddleware
from service.errors import ClientClosedRequest, GatewayError, describe_validation_errors
from service.readiness import ReadinessCache
from service.request_context import current_request_id, with_request_id
from service.root_path import RootPathMiddleware
from service.routes import docs, generate, health, infer, openai, v2
from service.routes.common import json_response
from service.settings import Settings, get_settings

log = logging.getLogger("service")

DESCRIPTION = """\
HTTPS front door for NVIDIA Triton Inference Server.

* `POST /infer` — tensors as JSON numbers or base64 raw bytes, checked against the model's metadata.
  Or images (base64 in JSON, a raw `image/jpeg|png|webp` body, or multipart files), resized and scaled
  as the model's config says, answered as top-k labels with `top_k`.
* `GET /health` — Triton's liveness and readiness.
* `/v2/...` — the KServe v2 protocol as Triton speaks it (tritonclient.http, perf_analyzer), binary tensors
  included.

Inference routes need the API Gateway key in the `x-api-key` header (**Authorize** above).
Every error is `{"error": "<message>"}` with an honest status: 400/404 for the request, 503/504 for Triton.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway, configured by ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level)
    log.setLevel(settings.log_level)
    observability.configure(settings)
    app = FastAPI(
        title="Triton Lambda Gateway",
        version="0.1.0",
        description=DESCRIPTION,
        swagger_ui_parameters={"persistAuthorization": True},
        # Served by routes/docs.py with assets from the app itself, not from a CDN.
        docs_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry, off: the gateway traces with X-Ray and counts with EMF
        # (service.observability), and FastAPI would otherwise look for OTel providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.readiness = ReadinessCache(settings.health_cache_seconds)
    # The routes join the app's own list rather than being included routers, which FastAPI matches twice per
    # request (the router, then the route); they already carry their router's prefix, tags and dependencies.
    # The inference routes import the pipeline (numpy, Pillow, the codecs) inside, on first use: a cold
    # start answering /health loads none of it.
    for router in (health.router, infer.router, v2.router, generate.router, openai.router, docs.router):
        app.router.routes.extend(router.routes)
    _install_error_handlers(app)
    # Outside the error handlers, so every answer is logged (envelopes included), with the path as the
    # caller sent it: the root-path middleware, added after it, runs first.
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RootPathMiddleware, api_root_path=settings.api_root_path)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        if isinstance(exc, ClientClosedRequest):
            # Nothing can be answered; one line says what happened, no traceback.
            log.info("%s %s: %s", request.method, request.url.path, exc.message)
            return json_response({"error": exc.message}, exc.status)
        if exc.status < 500:
            return json_response({"error": exc.message}, exc.status, exc.headers)
        # The detail (Triton's own text) is logged, never answered; the request id joins the two.
        request_id = current_request_id()
        log.warning("%d %s [request id %s] %s", exc.status, exc.message, request_id, exc.detail)
        return json_response({"error": with_request_id(exc.message)}, exc.status, exc.headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return json_response({"error": describe_validation_errors(exc.errors())}, 400)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        path = request.url.path.removeprefix(request.scope.get("root_path", ""))
        if path == "/v1" or path.startswith("/v1/"):
            # An unknown path or method under the OpenAI-compatible API, in OpenAI's error shape.
            error = {"message": str(exc.detail), "type": "invalid_request_error", "param": None, "code": None}
            return json_response({"error": error}, exc.status_code, headers)
        return json_response({"error": str(exc.detail)}, exc.status_code, headers)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception(
            "unhandled error on %s %s [request id %s]", request.method, request.url.path, current_request_id()
        )
        return json_response({"error": with_request_id("internal error")}, 500)

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        from service.openapi import describe_service
        from service.protocol.metadata import ModelMetadata, ServerMetadata
        from service.protocol.openai import ErrorEnvelope
        from service.protocol.schemas import (
            ErrorBody,
            HealthBody,
            ImageInferResponse,
            InferRequest,
            InferResponse,
            V2InferRequest,
        )

        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        # Bodies that routes decode themselves, and answers they reference rather than declare as response
        # models (a response model compiles a validator at a cold start), which FastAPI would not list.
        bodies = (InferRequest, V2InferRequest, ErrorBody, HealthBody, InferResponse, ImageInferResponse)
        for model in (*bodies, ModelMetadata, ServerMetadata, ErrorEnvelope):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        # FastAPI documents a 422 for every route with parameters; ours answer those failures as 400.
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation["responses"].pop("422", None)
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        describe_service(schema)
        app.openapi_schema = schema
    return app.openapi_schema


app = create_app()
