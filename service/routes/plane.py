"""The data plane and deadline of a model route's request, built from the app's settings; the pipeline is
imported on first use, so ``/health`` at a cold start never loads it (numpy, Pillow, the codecs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from service.routes.common import request_deadline
from service.settings import Settings
from service.triton import Deadline, get_client

if TYPE_CHECKING:
    from service.dataplane import DataPlane


def plane_of(request: Request) -> DataPlane:
    """The data plane for ``request``, with the app's settings and the process's Triton client."""
    from service.dataplane import DataPlane

    settings: Settings = request.app.state.settings
    return DataPlane(settings, get_client(settings))


def inference(request: Request) -> tuple[DataPlane, Deadline]:
    """The data plane and the deadline of an inference request."""
    return plane_of(request), request_deadline(request, request.app.state.settings)
