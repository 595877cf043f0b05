"""The data-plane dependency of the model routes (``/infer``, ``/v2``), apart from ``routes.common`` so that
``/health`` does not import the inference pipeline (numpy, Pillow, the codecs) at a cold start."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from service.dataplane import DataPlane
from service.routes.common import SettingsDep, TritonDep


async def _plane(settings: SettingsDep, triton: TritonDep) -> DataPlane:
    return DataPlane(settings, triton)


# The inference pipeline and model lookup every model route goes through.
PlaneDep = Annotated[DataPlane, Depends(_plane)]
