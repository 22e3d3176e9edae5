"""The local CA of the Vertex emulator's TLS port: reused, owner-only key, loopback names only."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from modeldrop.local.vertex.tls import (
    CA_FILE,
    CA_KEY_FILE,
    local_ca,
    server_certificate,
    server_context,
)

LOOPBACK = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))


def verify(ca: x509.Certificate, cert: x509.Certificate, name: x509.GeneralName) -> None:
    PolicyBuilder().store(Store([ca])).build_server_verifier(name).verify(cert, [])


def test_the_ca_is_made_once_and_reused(tmp_path: Path) -> None:
    context, ca_path = server_context(tmp_path)
    assert isinstance(context, ssl.SSLContext) and ca_path == tmp_path.resolve() / CA_FILE
    first = ca_path.read_bytes()
    server_context(tmp_path)
    assert ca_path.read_bytes() == first  # a second emulator here: same CA, same bundle
    assert (tmp_path / CA_KEY_FILE).stat().st_mode & 0o777 == 0o600
    (tmp_path / CA_KEY_FILE).write_text("not a key")
    server_context(tmp_path)
    assert ca_path.read_bytes() != first  # unreadable: made anew


def test_certificates_verify_for_loopback_names_only(tmp_path: Path) -> None:
    ca, ca_key = local_ca(tmp_path)
    cert, _ = server_certificate(ca, ca_key)
    for name in (x509.DNSName("localhost"), LOOPBACK):
        verify(ca, cert, name)
    with pytest.raises(VerificationError, match="subjectAltName"):
        verify(ca, cert, x509.DNSName("example.com"))
    # trusting the CA trusts no other host, even for a certificate it signed (name constraints)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "example.com")])
    other = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.com")]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    with pytest.raises(VerificationError, match="name constraints"):
        verify(ca, other, x509.DNSName("example.com"))
