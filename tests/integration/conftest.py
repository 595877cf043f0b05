"""A gateway under uvicorn in front of the session's real Triton."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway


@pytest.fixture(scope="session")
def gateway_url(triton: TritonServer) -> Iterator[str]:
    """Base URL of a gateway in front of the session's Triton."""
    with serve_gateway(Settings(triton_grpc_url=triton.grpc_url)) as url:
        yield url


@pytest.fixture
def client(gateway_url: str) -> Iterator[httpx.Client]:
    """An HTTP client bound to the session's gateway."""
    with httpx.Client(base_url=gateway_url, timeout=30) as http:
        yield http
