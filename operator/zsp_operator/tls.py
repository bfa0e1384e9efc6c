"""Certificates for serving HTTPS on loopback: a private CA and a serving certificate it signs.

Used by `zsp run --dev` (the webhook server the API server calls), by the in-memory API
server, and by the real-control-plane test tier. The extensions are the ones strict
verifiers want (Go's crypto/tls, Python's VERIFY_X509_STRICT): CA basic constraints and key
usage, key identifiers, serverAuth, SANs; so what works here works against kube-apiserver.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ServingPki:
    """PEM material: the CA (what clients trust) and the certificate a server presents."""

    ca_cert: bytes
    ca_key: bytes
    serving_cert: bytes
    serving_key: bytes

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write tls.crt and tls.key (0600) for a server; returns their paths."""
        cert, key = directory / "tls.crt", directory / "tls.key"
        cert.write_bytes(self.serving_cert)
        key.write_bytes(self.serving_key)
        key.chmod(0o600)
        return cert, key


def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """IP addresses as IP SANs, everything else as DNS names."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_serving_pki(
    hosts: Sequence[str] = LOOPBACK,
    *,
    common_name: str = "zsp-operator",
    now: dt.datetime | None = None,
    valid_for: dt.timedelta = dt.timedelta(days=7),
) -> ServingPki:
    """A fresh CA and a serving certificate for `hosts` signed by it."""
    now = now or dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(minutes=5)  # tolerate a little clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}-ca")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    serving_key = ec.generate_private_key(ec.SECP256R1())
    serving_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(serving_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServingPki(
        ca_cert=ca_cert.public_bytes(serialization.Encoding.PEM),
        ca_key=pem_key(ca_key),
        serving_cert=serving_cert.public_bytes(serialization.Encoding.PEM),
        serving_key=pem_key(serving_key),
    )
