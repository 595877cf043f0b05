"""The TLS-to-Triton option with real parts: the certificate deploy/scripts/make-triton-tls.sh makes,
served by a real tritonserver started with the gRPC flags the launch template's user data passes, verified as
the gateway verifies it (the CA from Parameter Store, the fixed server name, dialled by address)."""

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException
from user_data import render_user_data

SCRIPT = Path(__file__).parents[2] / "deploy" / "scripts" / "make-triton-tls.sh"
SERVER_NAME = "triton.internal"


def make_certificates(directory: Path, server_name: str = SERVER_NAME) -> Path:
    env = {**os.environ, "TLS_SERVER_NAME": server_name}
    subprocess.run(
        [str(SCRIPT), "--files-only", str(directory)], env=env, check=True, capture_output=True, timeout=60
    )
    return directory


def user_data_tls_flags(translated: dict[str, Any], directory: Path) -> list[str]:
    """The non-empty tls_flags of the rendered user data, with the instance's certificate directory here."""
    rendered = render_user_data(translated)
    (flags,) = [f.split() for f in re.findall(r"tls_flags=\(([^)]*)\)", rendered) if f.strip()]
    return [flag.replace("/etc/triton-tls", str(directory)) for flag in flags]


def client(url: str, ca: Path | None, server_name: str = SERVER_NAME) -> grpcclient.InferenceServerClient:
    if ca is None:
        return grpcclient.InferenceServerClient(url)
    return grpcclient.InferenceServerClient(
        url,
        ssl=True,
        root_certificates=str(ca),
        channel_args=[("grpc.ssl_target_name_override", server_name)],
    )


@pytest.fixture
def tls_triton(translated: dict[str, Any], triton_factory: Any, tmp_path: Path) -> tuple[Any, Path]:
    certificates = make_certificates(tmp_path / "tls")
    assert oct((certificates / "server.key").stat().st_mode & 0o777) == "0o600"
    assert not (certificates / "ca.key").exists(), "the CA's key is not kept"
    server = triton_factory(models=[], extra_args=user_data_tls_flags(translated, certificates))
    return server, certificates / "ca.crt"


def test_triton_serves_grpc_tls_that_verifies_against_the_stack_ca(tls_triton: tuple[Any, Path]) -> None:
    server, ca = tls_triton
    with client(server.grpc_url, ca) as trusted:
        assert trusted.is_server_live(client_timeout=10)
        assert trusted.is_server_ready(client_timeout=10)


def test_plaintext_another_ca_and_another_name_are_refused(
    tls_triton: tuple[Any, Path], tmp_path: Path
) -> None:
    server, ca = tls_triton
    other_ca = make_certificates(tmp_path / "other") / "ca.crt"
    for refused in (client(server.grpc_url, None), client(server.grpc_url, other_ca)):
        with refused, pytest.raises(InferenceServerException):
            refused.is_server_live(client_timeout=5)
    wrong_name = client(server.grpc_url, ca, server_name="other.internal")
    with wrong_name, pytest.raises(InferenceServerException):
        wrong_name.is_server_live(client_timeout=5)
