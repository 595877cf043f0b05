"""The real Mangum handler, imported as a Lambda cold start would (environment first), fed with API Gateway
REST events (``tests/lambda_events.py``)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev.tritonserver import TritonServer
from tests.lambda_stand_ins import ApiGateway, RuntimeApi


@pytest.fixture(scope="session")
def lambda_handler(triton: TritonServer) -> Iterator[Callable[..., dict[str, Any]]]:
    """``service.lambda_handler.handler`` of a fresh import configured for the session's Triton."""
    patch = pytest.MonkeyPatch()
    patch.setenv("TRITON_GRPC_URL", triton.grpc_url)
    patch.setenv("TRITON_TIMEOUT_SECONDS", "5")
    # One warm environment's channel for the whole session (these tests count channels); re-opening by
    # age is tests/fleet's and tests/integration/test_triton_client.py's.
    patch.setenv("CHANNEL_MAX_AGE_SECONDS", "0")
    for name in [m for m in sys.modules if m == "service.app" or m == "service.lambda_handler"]:
        del sys.modules[name]
    from service import settings

    settings.get_settings.cache_clear()
    module = importlib.import_module("service.lambda_handler")
    yield module.handler
    patch.undo()
    settings.get_settings.cache_clear()


@pytest.fixture(scope="module")
def stream_gateway(triton: TritonServer, model_repository: Path) -> Iterator[tuple[ApiGateway, RuntimeApi]]:
    """The gateway's app under ``python -m service.lambda_stream`` (the streaming function's entry), behind
    the API Gateway and Runtime API stand-ins (``tests/lambda_stand_ins.py``): ``gateway.url`` takes HTTP."""
    with RuntimeApi() as runtime, ApiGateway(runtime) as gateway:
        env = {
            **os.environ,
            "AWS_LAMBDA_RUNTIME_API": runtime.address,
            "AWS_LAMBDA_FUNCTION_NAME": "triton-gateway-stream",
            "TRITON_GRPC_URL": triton.grpc_url,
            "TRITON_TIMEOUT_SECONDS": "5",
            # The text models' chat templates (tokenizer_config.json) live beside them.
            "CHAT_TEMPLATE_DIR": str(model_repository),
        }
        root = Path(__file__).resolve().parents[2]
        process = subprocess.Popen([sys.executable, "-m", "service.lambda_stream"], cwd=root, env=env)
        try:
            yield gateway, runtime
        finally:
            process.terminate()
            process.wait(timeout=30)
