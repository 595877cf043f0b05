"""Fixtures shared by every test kind: a real Triton serving the local model repository.

``triton`` is one server for the whole session; ``triton_factory`` gives a test its own servers that it may
stop and restart without disturbing the others. Gateway fixtures build on these in
``tests/integration/conftest.py`` and ``tests/lambda/conftest.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import onnxruntime
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from localdev.model_repo import build_model_repository, onnx_path
from localdev.tritonserver import TritonServer

TritonFactory = Callable[..., TritonServer]


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local model repository, generated once per session in a temporary directory."""
    return build_model_repository(tmp_path_factory.mktemp("model_repository"))


@pytest.fixture(scope="session")
def triton_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this session's Triton logs go: pytest's per-run temp dir, so concurrent runs never share a file.

    (Interactive servers log to ``.local/logs``.) Every ``TritonStartupError`` quotes the log's tail.
    """
    return tmp_path_factory.mktemp("triton-logs")


@pytest.fixture(scope="session")
def triton_model_path(model_repository: Path) -> Path:
    """densenet_onnx's model.onnx: run it with onnxruntime to get the answer Triton should give."""
    return onnx_path(model_repository, "densenet_onnx", 1)


@pytest.fixture(scope="session")
def onnx_session(model_repository: Path) -> Callable[..., onnxruntime.InferenceSession]:
    """``onnx_session("classifier_batched", 2)``: onnxruntime on the ONNX file Triton runs, outside Triton.

    One session per model version for the whole run (each costs a load and its memory), built on first use.
    """

    @cache
    def session(model: str, version: int = 1) -> onnxruntime.InferenceSession:
        path = onnx_path(model_repository, model, version)
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    return session


@pytest.fixture(scope="session")
def triton(model_repository: Path, triton_log_dir: Path) -> Iterator[TritonServer]:
    """A started Triton serving every local model, shared by the session. Do not stop it in a test."""
    with TritonServer(model_repository, log_dir=triton_log_dir, log_name="session") as server:
        yield server


@pytest.fixture(scope="session")
def triton_grpc(triton: TritonServer) -> Iterator[grpcclient.InferenceServerClient]:
    """A tritonclient gRPC client connected to the session's ``triton``; closed at the end."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def triton_http(triton: TritonServer) -> Iterator[httpclient.InferenceServerClient]:
    """tritonclient.http on the session's ``triton`` itself: the answers the gateway's v2 routes must give."""
    client = httpclient.InferenceServerClient(triton.http_address)
    yield client
    client.close()


@pytest.fixture
def triton_factory(
    model_repository: Path, triton_log_dir: Path, request: pytest.FixtureRequest
) -> Iterator[TritonFactory]:
    """Start private Triton servers: ``triton_factory(models=["densenet_onnx"])``; all stopped afterwards.

    Keyword arguments go to ``TritonServer``; loading only the models a test needs keeps startup ~1.5 s.
    Logs: ``<triton_log_dir>/<test name>-<n>.log``.
    """
    log_dir = triton_log_dir
    servers: list[TritonServer] = []

    def start(models: Sequence[str] | None = None, **kwargs: Any) -> TritonServer:
        kwargs.setdefault("log_dir", log_dir)
        kwargs.setdefault("log_name", f"{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)}-{len(servers)}")
        server = TritonServer(model_repository, models=models, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
