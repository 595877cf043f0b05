"""A throwaway certificate authority and a server certificate it signs, for Triton's ``--grpc-use-ssl``.

Local and test use only: the key files are written unencrypted, next to the certificates. In AWS the stack
provisions Triton's certificate; the gateway is given the CA that signed it (``TRITON_GRPC_TLS_CA``)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The name the local server certificate carries; the gateway checks it (TRITON_GRPC_TLS_SERVER_NAME).
LOCAL_SERVER_NAME = "triton.local"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files: the CA certificate (what the gateway trusts) and the server's certificate and key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def triton_args(self) -> list[str]:
        """tritonserver's options for TLS on its gRPC endpoint with these files."""
        return [
            "--grpc-use-ssl=true",
            f"--grpc-server-cert={self.server_cert}",
            f"--grpc-server-key={self.server_key}",
            f"--grpc-root-cert={self.ca_cert}",
        ]


def make_test_pki(
    dest: Path,
    *,
    server_names: Sequence[str] = (LOCAL_SERVER_NAME,),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    days: int = 7,
) -> TlsFiles:
    """Write a new CA and a server certificate for ``server_names`` and ``ip_addresses`` under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"localdev test CA {dest.name}")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), valid)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    server_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_names[0])])
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in server_names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    server_cert = (
        _builder(subject, ca_name, server_key.public_key(), valid)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(dest / "ca.pem", dest / "server.pem", dest / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.server_key.chmod(0o600)
    return files


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    valid: tuple[datetime.datetime, datetime.datetime],
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
    )
