"""Certificates for serving HTTPS: a private CA and a serving certificate it signs.

Used by `zsp run --dev` (the webhook server the API server calls on loopback), by
`zsp run --webhook-service` (the same, reached through a Service; `webhookcert.py` keeps it
in a Secret), by the in-memory API server, and by the real-control-plane test tier. The
extensions are the ones strict verifiers want (Go's crypto/tls, Python's
VERIFY_X509_STRICT): CA basic constraints and key usage, key identifiers, serverAuth, SANs;
so what works here works against kube-apiserver.

Everything here but `write_pair` is pure: time comes in as `now`, material as bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = ("127.0.0.1", "localhost")
CA_CERT, TLS_CERT, TLS_KEY = "ca.crt", "tls.crt", "tls.key"  # keys of a kubernetes.io/tls Secret
# A stored certificate this close to its end is replaced at start rather than served.
RENEWAL_MARGIN = dt.timedelta(days=30)
SERVICE_CERT_VALIDITY = dt.timedelta(days=365)
_MAX_COMMON_NAME = 64


@dataclass(frozen=True)
class ServingPki:
    """PEM material: the CA (what clients trust) and the certificate a server presents."""

    ca_cert: bytes
    ca_key: bytes
    serving_cert: bytes
    serving_key: bytes

    def write(self, directory: Path) -> tuple[Path, Path]:
        """The serving certificate and key as files for a server; their paths."""
        return write_pair(directory, self.serving_cert, self.serving_key)


def write_pair(directory: Path, cert: bytes, key: bytes) -> tuple[Path, Path]:
    """tls.crt and tls.key in `directory`, readable by us alone; their paths.

    Each file is written under a temporary name created with mode 0600 (mkstemp: O_EXCL),
    so the key is never readable by others, not even for a moment, and then renamed over
    the old one: a server reloading meanwhile reads a whole file, old or new.
    """
    paths = directory / TLS_CERT, directory / TLS_KEY
    for path, data in zip(paths, (cert, key), strict=True):
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    return paths


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
    # X.509 caps a common name at 64 characters; clients match the SANs, not the name.
    common_name = common_name[:_MAX_COMMON_NAME]
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name[: _MAX_COMMON_NAME - 3]}-ca")]
    )
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


def service_dns_names(namespace: str, name: str, cluster_domain: str = "cluster.local") -> tuple[str, ...]:
    """The names a Service is reached by; the API server calls webhooks as `name.namespace.svc`."""
    return (
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.{cluster_domain}",
    )


def _certificates(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _signed_by(cert: x509.Certificate, authorities: Sequence[x509.Certificate]) -> bool:
    for authority in authorities:
        try:
            cert.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _dns_names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {name.lower() for name in san.get_values_for_type(x509.DNSName)}


def certificate_problem(
    material: Mapping[str, bytes],
    hosts: Sequence[str],
    now: dt.datetime,
    margin: dt.timedelta = RENEWAL_MARGIN,
) -> str | None:
    """Why stored serving material (ca.crt, tls.crt, tls.key) cannot be served for `hosts`
    until at least `now + margin`; None when it can.

    The reason is for logs: it never contains key material.
    """
    missing = [key for key in (CA_CERT, TLS_CERT, TLS_KEY) if not material.get(key)]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        authorities = _certificates(material[CA_CERT])
    except ValueError:
        return f"{CA_CERT} is not a PEM certificate"
    try:
        cert = x509.load_pem_x509_certificate(material[TLS_CERT])
    except ValueError:
        return f"{TLS_CERT} is not a PEM certificate"
    try:
        key = serialization.load_pem_private_key(material[TLS_KEY], password=None)
    except (ValueError, TypeError):
        return f"{TLS_KEY} is not an unencrypted PEM private key"
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        return f"{TLS_KEY} does not belong to {TLS_CERT}"
    uncovered = [host for host in hosts if host.lower() not in _dns_names(cert)]
    if uncovered:
        return f"{TLS_CERT} does not cover {', '.join(uncovered)}"
    if cert.not_valid_before_utc > now:
        return f"{TLS_CERT} is not valid before {cert.not_valid_before_utc.isoformat()}"
    issuers = [ca for ca in authorities if ca.not_valid_before_utc <= now < ca.not_valid_after_utc]
    if not _signed_by(cert, issuers):
        return f"{TLS_CERT} is not signed by a currently valid certificate of {CA_CERT}"
    issuer = next(ca for ca in issuers if _signed_by(cert, [ca]))
    ends = min(cert.not_valid_after_utc, issuer.not_valid_after_utc)
    if ends - margin <= now:
        return f"{TLS_CERT} expires at {ends.isoformat()}, within the renewal margin of {margin.days} days"
    return None


def ca_bundle(new_ca: bytes, previous: bytes | None, now: dt.datetime) -> bytes:
    """The CA certificates to trust: the new one first, then those of `previous` still valid
    at `now`, so webhook servers still presenting a certificate of the old CA keep answering
    until they restart."""
    bundle = [x509.load_pem_x509_certificate(new_ca)]
    try:
        older = _certificates(previous) if previous else []
    except ValueError:
        older = []  # unreadable: nothing served from it can be trusted anyway
    for ca in older:
        if ca not in bundle and ca.not_valid_after_utc > now:
            bundle.append(ca)
    return b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in bundle)
