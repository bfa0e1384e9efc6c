"""The audit webhook believes only the API server, refuses what it cannot read, and loses nothing by it.

Served for real (TLS on loopback), as kube-apiserver's webhook backend reaches it: a bearer
token from the webhook kubeconfig, or a client certificate signed by the configured CA.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zsp_operator.core.usage import Use
from zsp_operator.serving.auditsink import PATH, audit_sink
from zsp_operator.serving.pki import LOOPBACK, ServingPki, issue_serving_pki, pem_key
from zsp_operator.settings import Settings

TOKEN = "audit-webhook-token-for-tests"
EVENT = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "a1",
    "stage": "ResponseComplete",
    "verb": "get",
    "user": {"username": "system:serviceaccount:payments:zsp-read-1"},
    "objectRef": {"resource": "pods", "namespace": "payments", "name": "web-1", "apiVersion": "v1"},
    "responseStatus": {"metadata": {}, "code": 200},
    "requestReceivedTimestamp": "2026-03-01T12:00:10.000000Z",
    "stageTimestamp": "2026-03-01T12:00:10.003000Z",
    "annotations": {"authorization.k8s.io/decision": "allow"},
}


def event_list(*items: Any) -> bytes:
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": list(items)}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def client_certificate(ca: ServingPki, name: str) -> tuple[bytes, bytes]:
    """A client certificate the CA signed, as kube-apiserver's webhook kubeconfig would carry."""
    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert)
    ca_key = serialization.load_pem_private_key(ca.ca_key, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key(key)


@dataclass
class Sink:
    url: str
    server_ca: Path
    token_file: Path
    client_ca: ServingPki
    tmp: Path
    received: list[list[Use]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def tls(self, client: ServingPki | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if client is not None:
            cert, key = client_certificate(client, "kube-apiserver")
            (self.tmp / "client.crt").write_bytes(cert)
            (self.tmp / "client.key").write_bytes(key)
            context.load_cert_chain(self.tmp / "client.crt", self.tmp / "client.key")
        return context

    async def post(
        self, body: bytes, *, token: str | None = TOKEN, client: ServingPki | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers=headers, ssl=self.tls(client)) as response,
        ):
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[Sink]:
    serving = issue_serving_pki(LOOPBACK)
    serving.write(tmp_path)
    (tmp_path / "ca.crt").write_bytes(serving.ca_cert)
    (tmp_path / "token").write_text(TOKEN + "\n")
    client_ca = issue_serving_pki(LOOPBACK, common_name="audit-clients")
    (tmp_path / "client-ca.crt").write_bytes(client_ca.ca_cert)
    port = free_port()
    settings = Settings(
        dev=True,
        audit_webhook_port=port,
        audit_webhook_cert_dir=str(tmp_path),
        audit_webhook_token_file=str(tmp_path / "token"),
        audit_webhook_client_ca=str(tmp_path / "client-ca.crt"),
        audit_webhook_max_body=64 * 1024,
    )
    found = Sink(
        f"https://127.0.0.1:{port}{PATH}", tmp_path / "ca.crt", tmp_path / "token", client_ca, tmp_path
    )
    async with audit_sink(settings, found.received.append, found.refused.append):
        yield found


async def test_events_posted_with_the_api_servers_token_are_received(sink: Sink) -> None:
    status, _ = await sink.post(event_list(EVENT))
    assert status == 200
    assert [[(u.verb, u.resource, u.name) for u in batch] for batch in sink.received] == [
        [("get", "pods", "web-1")]
    ]
    assert sink.refused == []


@pytest.mark.parametrize("token", [None, "guessed", TOKEN + "x", ""])
async def test_anyone_else_gets_401_and_is_counted_and_nothing_is_received(
    sink: Sink, token: str | None
) -> None:
    status, body = await sink.post(event_list(EVENT), token=token)
    assert status == 401
    assert "API server only" in body["message"]
    assert sink.received == []
    assert sink.refused == ["unauthenticated"]


async def test_a_client_certificate_signed_by_the_client_ca_is_believed(sink: Sink) -> None:
    status, _ = await sink.post(event_list(EVENT), token=None, client=sink.client_ca)
    assert status == 200
    assert len(sink.received) == 1


async def test_a_client_certificate_from_another_ca_never_gets_through(sink: Sink) -> None:
    stranger = issue_serving_pki(LOOPBACK, common_name="stranger")
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        await sink.post(event_list(EVENT), token=None, client=stranger)
    assert sink.received == []


async def test_a_rotated_token_file_is_read_again(sink: Sink) -> None:
    sink.token_file.write_text("rotated-token")
    stat = sink.token_file.stat()
    os.utime(sink.token_file, (stat.st_atime, stat.st_mtime + 5))  # a new Secret projection
    assert (await sink.post(event_list(EVENT)))[0] == 401
    assert (await sink.post(event_list(EVENT), token="rotated-token"))[0] == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not JSON"),
        (json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1"}).encode(), "kind EventList"),
        (event_list({**EVENT, "responseStatus": {}}), "items[0].responseStatus.code"),
    ],
)
async def test_a_malformed_list_gets_400_naming_the_field(sink: Sink, body: bytes, message: str) -> None:
    status, answer = await sink.post(body)
    assert status == 400
    assert message in answer["message"]
    assert sink.received == []
    assert sink.refused == ["malformed"]
    assert (await sink.post(event_list(EVENT)))[0] == 200  # and the next good list is taken as ever


async def test_an_oversized_list_gets_413(sink: Sink) -> None:
    status, answer = await sink.post(event_list(*[EVENT] * 200))  # about 100 KB, over the 64 KiB limit
    assert status == 413
    assert "batch-max-size" in answer["message"]
    assert sink.received == []
    assert sink.refused == ["too-large"]


def test_the_audit_webhook_needs_a_way_to_know_the_api_server() -> None:
    with pytest.raises(ValueError, match="needs --audit-webhook-token-file or --audit-webhook-client-ca"):
        Settings(audit_webhook_port=8444, audit_webhook_cert_dir="/tmp")
    with pytest.raises(ValueError, match="needs --audit-webhook-cert-dir"):
        Settings(audit_webhook_port=8444, audit_webhook_token_file="/tmp/token")
