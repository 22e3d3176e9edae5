"""TLS for the query routes: a local CA, a server certificate for 127.0.0.1 (dedicated
endpoints) and one for *.prediction.p.vertexai.goog (Private Service Connect endpoints).

Clients query a dedicated endpoint at `https://{dedicatedEndpointDns}/...` (the SDK writes the
scheme itself), so the emulator serves those routes over TLS with a certificate for 127.0.0.1
and localhost, signed by a CA of its own. The CA is written to DIR/vertex-ca.pem, its key beside
it (owner-only), and reused by later runs from the same folder, so one bundle verifies every
emulator started there: point REQUESTS_CA_BUNDLE at it.

A Private Service Connect (PSC) endpoint's listener (`psc`) presents a certificate for the name
Vertex AI documents for its dedicated private endpoints: "The self-signed certificate includes
the subject alternative name (SAN) *.prediction.p.vertexai.goog", queried by the FQDN
ENDPOINT_ID-REGION-PROJECT_NUMBER.prediction.p.vertexai.goog that a private DNS zone
prediction.p.vertexai.goog. resolves to the PSC endpoint's IP ("Support for Transport Layer
Security (TLS) certificates", https://cloud.google.com/vertex-ai/docs/predictions/private-service-connect;
the same page says ports 443 (TLS) and 80 (plain) are open, and that clients download the
certificate and add it to their trust store). Here the same local CA signs it, so the one
bundle verifies both.

The CA is name-constrained to 127.0.0.1, localhost and prediction.p.vertexai.goog (with its
subdomains): trusting it trusts no other host. A CA from an older run without the PSC name in
its constraints is made anew (certificates it signed for that name would not verify).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DIR = Path(".modeldrop")
CA_FILE = "vertex-ca.pem"
CA_KEY_FILE = "vertex-ca-key.pem"
CA_DAYS = 3650
SERVER_DAYS = 365
NAMES: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
]
PSC_DOMAIN = "prediction.p.vertexai.goog"  # Vertex AI's private (PSC) endpoints' names
PSC_NAMES: list[x509.GeneralName] = [x509.DNSName(f"*.{PSC_DOMAIN}")]
CONSTRAINTS: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
    x509.DNSName(PSC_DOMAIN),  # permits the domain and every name under it
]


def server_context(
    directory: Path = DEFAULT_DIR, names: list[x509.GeneralName] | None = None
) -> tuple[ssl.SSLContext, Path]:
    """A server SSLContext with a fresh certificate for `names` (default 127.0.0.1 and
    localhost; PSC_NAMES for a PSC endpoint), and the path of the CA that signed it (created in
    `directory` on first use)."""
    cert, key = server_certificate(*local_ca(directory), names=names)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="modeldrop-tls-") as tmp:  # load_cert_chain reads files
        chain, private = Path(tmp) / "server.pem", Path(tmp) / "server-key.pem"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(private, key)
        context.load_cert_chain(chain, private)
    return context, directory.resolve() / CA_FILE


def server_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new key and a certificate for it, for `names` (default 127.0.0.1 and localhost; its
    common name is the first DNS name), signed by the CA."""
    names = names or NAMES
    common = next((n.value for n in names if isinstance(n, x509.DNSName)), "localhost")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        _builder(_name(common), ca_cert.subject, key, now, SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def local_ca(directory: Path = DEFAULT_DIR) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA in `directory`: reused while it loads, outlives a new server certificate and is
    constrained to today's names, else made anew. A lock file keeps emulators starting together
    on one CA."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_FILE, directory / CA_KEY_FILE
    with _locked(directory / "vertex-ca.lock"):
        now = datetime.datetime.now(datetime.UTC)
        with contextlib.suppress(OSError, ValueError):
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            lasts = cert.not_valid_after_utc > now + datetime.timedelta(days=SERVER_DAYS)
            if lasts and _constrained(cert) and isinstance(key, ec.EllipticCurvePrivateKey):
                return cert, key
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name("modeldrop local Vertex AI emulator CA")
        cert = (
            _builder(name, name, key, now, CA_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.NameConstraints(CONSTRAINTS, None), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert, key


def _constrained(cert: x509.Certificate) -> bool:
    """Whether the CA's name constraints permit exactly today's CONSTRAINTS."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return False
    permitted = list(constraints.permitted_subtrees or [])
    return sorted(map(repr, permitted)) == sorted(map(repr, CONSTRAINTS))


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clock skew between processes
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(
    digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """The key in PEM, readable by the owner only."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock
