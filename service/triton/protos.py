"""Triton's generated protobuf modules (``service_pb2``, ``service_pb2_grpc``, ``model_config_pb2``) without
tritonclient's Python client.

They live in the ``tritonclient.grpc`` package, whose ``__init__`` imports the whole client (numpy,
rapidjson, ml_dtypes, packaging) that the gateway never uses: it speaks to Triton with these messages and
its own channel. A cold start does not pay for that: while the three modules load, ``tritonclient.grpc``
stands in as a bare package (its path only), and is taken out again afterwards, so a later
``import tritonclient.grpc`` (the tests, bench/) runs the real ``__init__``, which finds the modules already
loaded and reuses them (a protobuf descriptor is never registered twice).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

_PACKAGE = "tritonclient.grpc"
_MODULES = ("model_config_pb2", "service_pb2", "service_pb2_grpc")


def _load() -> tuple[Any, ...]:
    if _PACKAGE in sys.modules:  # the real package is already imported: use its modules
        return tuple(importlib.import_module(f"{_PACKAGE}.{name}") for name in _MODULES)
    spec = importlib.util.find_spec(_PACKAGE)  # imports tritonclient (empty), not tritonclient.grpc
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tritonclient[grpc] is not installed")
    stand_in = types.ModuleType(_PACKAGE)
    stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules[_PACKAGE] = stand_in
    try:
        return tuple(importlib.import_module(f"{_PACKAGE}.{name}") for name in _MODULES)
    finally:
        if sys.modules.get(_PACKAGE) is stand_in:
            del sys.modules[_PACKAGE]


model_config_pb2, service_pb2, service_pb2_grpc = _load()
