"""``GET /health``: is Triton live and ready, answered within the health deadline even when it is not."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from service.errors import GatewayError, TritonTimeout
from service.protocol.envelopes import HealthBody
from service.routes.common import HealthDeadlineDep, SettingsDep, TritonDep, json_response

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    summary="Triton's liveness and readiness",
    response_model=HealthBody,
    responses={503: {"model": HealthBody, "description": "Triton is unreachable or not ready"}},
)
def health(settings: SettingsDep, triton: TritonDep, deadline: HealthDeadlineDep) -> Response:
    """200 when Triton is live and ready; 503 with the reason otherwise."""
    body = HealthBody(status="unhealthy", triton="unavailable", default_model=settings.default_model)
    try:
        if not (triton.server_live(deadline) and triton.server_ready(deadline)):
            body.triton, body.error = "not ready", "Triton is live but not ready"
        else:
            body.status, body.triton = "healthy", "ready"
            body.default_model_ready = triton.model_ready(settings.default_model, "", deadline)
    except TritonTimeout as exc:
        body.triton, body.error = "timeout", exc.message
    except GatewayError as exc:
        body.error = exc.message
    status = 200 if body.status == "healthy" else 503
    return json_response(body.model_dump(exclude_none=True), status_code=status)
