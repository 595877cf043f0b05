"""The data-plane dependency of the model routes (``/infer``, ``/v2``), apart from ``routes.common`` so that
``/health`` does not import the inference pipeline (numpy, Pillow, the codecs) at a cold start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.dataplane import DataPlane
from service.routes.common import SettingsDep, TritonDep, request_deadline
from service.settings import Settings
from service.triton import Deadline, get_client


async def _plane(settings: SettingsDep, triton: TritonDep) -> DataPlane:
    return DataPlane(settings, triton)


# The inference pipeline and model lookup every model route goes through.
PlaneDep = Annotated[DataPlane, Depends(_plane)]


@dataclass(frozen=True, slots=True)
class Inference:
    """What an inference route runs with: the data plane and the request's deadline."""

    plane: DataPlane
    deadline: Deadline


def request_inference(request: Request) -> Inference:
    """The data plane and deadline of an inference request (the lean handlers call it directly)."""
    settings: Settings = request.app.state.settings
    return Inference(DataPlane(settings, get_client(settings)), request_deadline(request, settings))


async def _inference(request: Request) -> Inference:
    # One dependency, not four (settings, client, plane, deadline): FastAPI's resolution costs ~40 us a
    # node per request, and the inference routes are the hot path.
    return request_inference(request)


# The data plane and deadline of POST /infer and POST /v2/.../infer.
InferenceDep = Annotated[Inference, Depends(_inference)]
