"""TLS to Triton: a real Triton started with ``--grpc-use-ssl`` and a throwaway CA (localdev.tls)."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from localdev.tls import LOCAL_SERVER_NAME, TlsFiles, make_test_pki
from localdev.tritonserver import TritonServer
from service.settings import Settings
from tests.gateway import serve_gateway

ZERO = {
    "model": "slow_model",
    "inputs": [{"name": "DELAY_MS", "datatype": "INT32", "shape": [1], "data": [0]}],
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_triton(triton_factory, pki: TlsFiles) -> TritonServer:
    server: TritonServer = triton_factory(models=["slow_model"], extra_args=pki.triton_args())
    return server


def tls_settings(server: TritonServer, ca: str, server_name: str = LOCAL_SERVER_NAME) -> Settings:
    return Settings(
        triton_grpc_url=server.grpc_url,
        triton_grpc_tls=True,
        triton_grpc_tls_ca=ca,
        triton_grpc_tls_server_name=server_name,
        default_model="slow_model",
    )


@pytest.mark.parametrize(
    ("ca_as", "server_name"),
    [("path", LOCAL_SERVER_NAME), ("pem", ""), ("path", "")],
    ids=["ca-file+name", "ca-pem+ip", "ca-file+ip"],
)
def test_the_gateway_talks_tls_to_triton(tls_triton: TritonServer, pki: TlsFiles, ca_as, server_name):
    # GIVEN the CA as a path or as PEM text, and the certificate checked by its DNS name or its IP address
    ca = str(pki.ca_cert) if ca_as == "path" else pki.ca_cert.read_text()
    with (
        serve_gateway(tls_settings(tls_triton, ca, server_name)) as url,
        httpx.Client(base_url=url) as client,
    ):
        # THEN health and inference both go through TLS
        assert client.get("/health").json()["status"] == "healthy"
        answer = client.post("/infer", json=ZERO)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [0]


def test_plaintext_gateway_cannot_reach_a_tls_triton(tls_triton: TritonServer):
    settings = Settings(triton_grpc_url=tls_triton.grpc_url, default_model="slow_model")
    with serve_gateway(settings) as url, httpx.Client(base_url=url) as client:
        assert client.post("/infer", json=ZERO).status_code == 503


@pytest.mark.parametrize("wrong", ["ca", "server-name"])
def test_a_certificate_that_does_not_verify_is_a_clear_503(
    tls_triton: TritonServer, pki: TlsFiles, tmp_path, caplog, wrong
):
    # GIVEN a gateway that trusts another CA, or checks the certificate against another name
    if wrong == "ca":
        settings = tls_settings(tls_triton, str(make_test_pki(tmp_path / "other-ca").ca_cert))
    else:
        settings = tls_settings(tls_triton, str(pki.ca_cert), "not-triton.example")
    caplog.set_level(logging.INFO)
    with serve_gateway(settings) as url, httpx.Client(base_url=url) as client:
        # WHEN a request needs Triton
        answer = client.post("/infer", json=ZERO)
        health = client.get("/health")
    # THEN a 503 that says what is wrong, and nothing of where Triton is
    assert answer.status_code == 503
    assert re.fullmatch(
        r"Triton is unavailable: its TLS certificate did not verify \(request id \w+\)",
        answer.json()["error"],
    )
    assert health.status_code == 503
    assert health.json()["error"] == "Triton is unavailable: its TLS certificate did not verify"
    port = str(tls_triton.grpc_port)
    assert port not in answer.text + health.text and "127.0.0.1" not in answer.text + health.text
    # AND one log line for the request says why, with the request id of the answer
    request_id = answer.json()["error"].rsplit(" ", 1)[1].rstrip(")")
    why = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(why) == 1
    assert "TLS to Triton failed certificate verification" in why[0].getMessage()
    assert ("CERTIFICATE_VERIFY_FAILED" if wrong == "ca" else "Hostname Verification") in why[0].getMessage()


def test_a_ca_setting_that_is_no_certificate_fails_at_startup(tmp_path):
    (tmp_path / "empty.pem").write_text("nothing here\n")
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        Settings(triton_grpc_tls=True, triton_grpc_tls_ca=str(tmp_path / "empty.pem"))
    with pytest.raises(ValueError, match="neither PEM text nor a readable PEM file"):
        Settings(triton_grpc_tls=True, triton_grpc_tls_ca=str(tmp_path / "missing.pem"))
