"""TLS and mutual TLS between TritonClient and the real embedded tritonserver, with certificates made for the test.

A CA signs the server's certificate (SAN 127.0.0.1 and localhost) and a client certificate; a second CA signs
nothing the server knows. The server's gRPC endpoint uses TLS (`--grpc-use-ssl`, and `--grpc-use-ssl-mutual` to
require client certificates); the launcher's readiness check goes over plain HTTP, which stays as it is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tritonforge.client import AsyncTritonClient, TritonClient
from tritonforge.errors import ClientError, ServerUnavailableError
from tritonforge.serving.launcher import EmbeddedTriton

pytestmark = pytest.mark.integration

MODEL = "digits"


@dataclass(frozen=True)
class Certs:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    """A client certificate signed by `other_ca`, which the server does not trust."""
    stranger_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )


def _write(folder: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _ca(folder: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert, _write(folder, name, key, cert)[0]


def _leaf(
    folder: Path, name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, *, server: bool
) -> tuple[Path, Path]:
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = _builder(name, ca_cert.subject, key).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(folder, name, key, builder.sign(ca_key, hashes.SHA256()))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert, ca = _ca(folder, "ca")
    other_key, other_cert, other_ca = _ca(folder, "other-ca")
    server_cert, server_key = _leaf(folder, "server", ca_key, ca_cert, server=True)
    client_cert, client_key = _leaf(folder, "client", ca_key, ca_cert, server=False)
    stranger_cert, stranger_key = _leaf(folder, "stranger", other_key, other_cert, server=False)
    return Certs(ca, other_ca, server_cert, server_key, client_cert, client_key, stranger_cert, stranger_key)


def _tls_server(repository: Path, certs: Certs, log_path: Path, *, mutual: bool) -> Iterator[EmbeddedTriton]:
    args = [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={certs.server_cert}",
        f"--grpc-server-key={certs.server_key}",
        f"--grpc-root-cert={certs.ca}",  # the CA client certificates must chain to (mutual TLS)
    ]
    if mutual:
        args.append("--grpc-use-ssl-mutual=true")
    server = EmbeddedTriton(repository=repository, log_path=log_path, extra_args=tuple(args), startup_timeout_s=120)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_server(
    digits_repository: Path, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedTriton]:
    yield from _tls_server(digits_repository, certs, tmp_path_factory.mktemp("tls-server") / "log", mutual=False)


@pytest.fixture(scope="module")
def mtls_server(
    digits_repository: Path, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedTriton]:
    yield from _tls_server(digits_repository, certs, tmp_path_factory.mktemp("mtls-server") / "log", mutual=True)


def _batch(digits_split) -> np.ndarray:
    return np.ascontiguousarray(digits_split.x_test[:4], dtype=np.float32)


def _expected(digits_split) -> np.ndarray:
    return digits_split.torch_logits[:4].argmax(axis=1)


def test_client_serves_over_tls_when_given_the_servers_ca(
    tls_server: EmbeddedTriton, certs: Certs, digits_split
) -> None:
    with TritonClient(tls_server.grpc_url, tls=True, root_certificates=certs.ca, timeout_s=30.0) as client:
        client.wait_until_ready(MODEL, timeout_s=60.0)
        logits = client.infer(MODEL, {"image": _batch(digits_split)})["logits"]
    np.testing.assert_array_equal(logits.argmax(axis=1), _expected(digits_split))


def test_async_client_serves_over_tls_when_given_the_servers_ca(
    tls_server: EmbeddedTriton, certs: Certs, digits_split
) -> None:
    async def run() -> np.ndarray:
        async with AsyncTritonClient(tls_server.grpc_url, tls=True, root_certificates=certs.ca) as client:
            return (await client.infer(MODEL, {"image": _batch(digits_split)}))["logits"]

    np.testing.assert_array_equal(asyncio.run(run()).argmax(axis=1), _expected(digits_split))


def test_client_fails_with_one_line_naming_the_ca_when_ca_is_wrong(
    tls_server: EmbeddedTriton, certs: Certs, digits_split
) -> None:
    with TritonClient(tls_server.grpc_url, tls=True, root_certificates=certs.other_ca, timeout_s=30.0) as client:
        with pytest.raises(ClientError) as info:
            client.infer(MODEL, {"image": _batch(digits_split)})
    message = str(info.value)
    assert type(info.value) is ClientError  # final, not a ServerUnavailableError retried until the deadline
    assert "\n" not in message
    assert f"TLS handshake with {tls_server.grpc_url} failed" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "check that root_certificates is the CA that signed the server's certificate" in message


def test_plaintext_client_is_told_to_turn_on_tls_when_server_uses_it(tls_server: EmbeddedTriton) -> None:
    with TritonClient(tls_server.grpc_url, timeout_s=30.0) as client:
        with pytest.raises(ServerUnavailableError, match="set tls=true"):
            client.model_signature(MODEL)


def test_client_serves_over_mutual_tls_when_it_presents_a_trusted_certificate(
    mtls_server: EmbeddedTriton, certs: Certs, digits_split
) -> None:
    with TritonClient(
        mtls_server.grpc_url, tls=True, root_certificates=certs.ca, private_key=certs.client_key,
        certificate_chain=certs.client_cert, timeout_s=30.0,
    ) as client:  # fmt: skip
        logits = client.infer(MODEL, {"image": _batch(digits_split)})["logits"]
    np.testing.assert_array_equal(logits.argmax(axis=1), _expected(digits_split))


def test_client_is_told_to_set_a_client_certificate_when_mutual_tls_required(
    mtls_server: EmbeddedTriton, certs: Certs, digits_split
) -> None:
    with TritonClient(mtls_server.grpc_url, tls=True, root_certificates=certs.ca, timeout_s=30.0) as client:
        with pytest.raises(ServerUnavailableError) as info:
            client.infer(MODEL, {"image": _batch(digits_split)})
    message = str(info.value)
    assert "\n" not in message
    assert "mutual TLS" in message and "set private_key and certificate_chain" in message


def test_client_is_told_to_check_its_certificate_when_server_does_not_trust_it(
    mtls_server: EmbeddedTriton, certs: Certs, digits_split
) -> None:
    with TritonClient(
        mtls_server.grpc_url, tls=True, root_certificates=certs.ca, private_key=certs.stranger_key,
        certificate_chain=certs.stranger_cert, timeout_s=30.0,
    ) as client:  # fmt: skip
        with pytest.raises(ClientError) as info:
            client.infer(MODEL, {"image": _batch(digits_split)})
    message = str(info.value)
    assert "\n" not in message
    assert "certificate_chain" in message
