"""The webhook server's certificate is swapped in place: new connections get the new one.

The files the operator writes for it are readable by us alone from their first byte.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from zsp_operator.serving import pki
from zsp_operator.serving.pki import LOOPBACK, TLS_CERT, TLS_KEY, issue_serving_pki
from zsp_operator.serving.webhookcert import ReloadableContext


def write_pair(directory: Path, cert: bytes, key: bytes) -> None:
    (directory / TLS_CERT).write_bytes(cert)
    (directory / TLS_KEY).write_bytes(key)


async def presented(port: int) -> x509.Certificate:
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[ReloadableContext, int]]:
    first = issue_serving_pki(LOOPBACK, common_name="first")
    write_pair(tmp_path, first.serving_cert, first.serving_key)
    tls = ReloadableContext(tmp_path / TLS_CERT, tmp_path / TLS_KEY)

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=tls.context)
    async with server:
        yield tls, server.sockets[0].getsockname()[1]


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


async def test_a_rewritten_pair_is_served_to_new_connections(
    served: tuple[ReloadableContext, int], tmp_path: Path
) -> None:
    tls, port = served
    assert common_name(await presented(port)) == "first"
    assert tls.reload() is False, "unchanged files load nothing"

    second = issue_serving_pki(LOOPBACK, common_name="second")
    write_pair(tmp_path, second.serving_cert, second.serving_key)
    assert tls.reload() is True
    assert common_name(await presented(port)) == "second"


async def test_a_pair_caught_mid_rewrite_is_refused_and_the_old_one_kept(
    served: tuple[ReloadableContext, int], tmp_path: Path
) -> None:
    tls, port = served
    first_key = (tmp_path / TLS_KEY).read_bytes()
    second = issue_serving_pki(LOOPBACK, common_name="second")
    write_pair(tmp_path, second.serving_cert, first_key)  # the new certificate, the old key
    with pytest.raises(ssl.SSLError):
        tls.reload()
    assert common_name(await presented(port)) == "first"

    write_pair(tmp_path, second.serving_cert, second.serving_key)  # the rewrite completes
    assert tls.reload() is True
    assert common_name(await presented(port)) == "second"


def test_written_files_are_ours_alone_before_they_take_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / TLS_KEY).write_bytes(b"old")
    (tmp_path / TLS_KEY).chmod(0o644)  # replaced, not reused with its mode
    renamed: list[tuple[str, int, bytes]] = []
    rename = os.replace

    def replace(source: str, target: Path) -> None:
        renamed.append((Path(target).name, stat.S_IMODE(os.stat(source).st_mode), Path(source).read_bytes()))
        rename(source, target)

    monkeypatch.setattr(os, "replace", replace)
    issued = issue_serving_pki(LOOPBACK, common_name="first")
    cert, key = pki.write_pair(tmp_path, issued.serving_cert, issued.serving_key)
    assert renamed == [(TLS_CERT, 0o600, issued.serving_cert), (TLS_KEY, 0o600, issued.serving_key)]
    assert (cert.read_bytes(), key.read_bytes()) == (issued.serving_cert, issued.serving_key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == [TLS_CERT, TLS_KEY], "no temporary left"
