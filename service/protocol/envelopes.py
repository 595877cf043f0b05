"""The error envelope and the ``/health`` answer: the wire types a cold start's ``/health`` needs, apart
from the request and response models in ``schemas`` (which re-exports these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error the gateway answers (tritonclient reads the ``error`` key)."""

    error: str


class HealthBody(BaseModel):
    """``GET /health``."""

    status: Literal["healthy", "unhealthy"]
    triton: Literal["ready", "not ready", "unavailable", "timeout"]
    default_model: str
    default_model_ready: bool | None = None
    error: str | None = None
