"""HTTPS for the in-memory API server and test webhooks (kubectl sends tokens only over TLS)."""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from zsp_operator.serving.pki import LOOPBACK, ServingPki, issue_serving_pki


@dataclass(frozen=True)
class SelfSigned:
    """A private CA and the serving certificate it signed; clients trust `cert_pem` (the CA)."""

    pki: ServingPki

    @property
    def cert_pem(self) -> bytes:
        return self.pki.ca_cert

    def server_context(self) -> ssl.SSLContext:
        """An SSL context serving the certificate (the ssl module loads keys from files)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as folder:
            cert, key = self.pki.write(Path(folder))
            context.load_cert_chain(cert, key)
        return context


def self_signed(common_name: str = "localhost", hosts: tuple[str, ...] = LOOPBACK) -> SelfSigned:
    """Serving material for `hosts` (DNS names or IP addresses)."""
    return SelfSigned(issue_serving_pki(hosts, common_name=common_name))
