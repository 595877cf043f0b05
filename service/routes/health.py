"""``GET /health``: can Triton serve the default model, answered within the health deadline even when it
cannot, and asked of Triton at most once per ``HEALTH_CACHE_SECONDS`` however many callers ask."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.protocol.envelopes import HealthBody
from service.readiness import ReadinessCache
from service.routes.common import HealthDeadlineDep, SettingsDep, TritonDep, json_response

router = APIRouter(tags=["health"])

# The answers' schema by reference, not as response models: a response model makes FastAPI compile a
# validator and serializer for it, and check it is no pydantic.v1 model (importing pydantic.v1), on a
# cold start's first and often only route. The OpenAPI document adds HealthBody to its components.
_HEALTH_SCHEMA = {"application/json": {"schema": {"$ref": "#/components/schemas/HealthBody"}}}


@router.get(
    "/health",
    summary="Triton's liveness and readiness",
    responses={
        200: {"description": "Successful Response", "content": _HEALTH_SCHEMA},
        503: {"description": "Triton is unreachable or not ready", "content": _HEALTH_SCHEMA},
    },
)
async def health(
    request: Request, settings: SettingsDep, triton: TritonDep, deadline: HealthDeadlineDep
) -> Response:
    """200 when Triton answers and its default model is ready; 503 with the reason otherwise."""
    # A coroutine that awaits the probe: a cold start neither starts a worker thread nor imports anyio's
    # thread machinery for it.
    cache: ReadinessCache = request.app.state.readiness
    found = await cache.get(triton, settings.default_model, deadline)
    body = HealthBody(
        status="healthy" if found.healthy else "unhealthy",
        triton=found.triton,
        default_model=settings.default_model,
        default_model_ready=found.model_ready,
        error=found.error,
    )
    return json_response(body.model_dump(exclude_none=True), status_code=200 if found.healthy else 503)
