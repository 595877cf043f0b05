"""``GET /health``: can Triton serve the default model, answered within the health deadline even when it
cannot, and asked of Triton at most once per ``HEALTH_CACHE_SECONDS`` however many callers ask."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.protocol.envelopes import HealthBody
from service.readiness import ReadinessCache
from service.routes.common import HealthDeadlineDep, SettingsDep, TritonDep, json_response

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    summary="Triton's liveness and readiness",
    response_model=HealthBody,
    responses={503: {"model": HealthBody, "description": "Triton is unreachable or not ready"}},
)
def health(
    request: Request, settings: SettingsDep, triton: TritonDep, deadline: HealthDeadlineDep
) -> Response:
    """200 when Triton answers and its default model is ready; 503 with the reason otherwise."""
    cache: ReadinessCache = request.app.state.readiness
    found = cache.get(triton, settings.default_model, deadline)
    body = HealthBody(
        status="healthy" if found.healthy else "unhealthy",
        triton=found.triton,
        default_model=settings.default_model,
        default_model_ready=found.model_ready,
        error=found.error,
    )
    return json_response(body.model_dump(exclude_none=True), status_code=200 if found.healthy else 503)
