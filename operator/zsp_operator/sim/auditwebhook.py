"""The audit webhook backend in batch mode, as kube-apiserver's `--audit-webhook-*` flags set it up.

The webhook is described by a kubeconfig file (the cluster's `server` and CA, the user's
token or client certificate). Events are buffered and POSTed as an `EventList` when a batch
is full or its first event has waited `max_wait` seconds; a failed POST is retried with
exponential backoff, then the batch is dropped and logged. Recording an event is a
non-blocking append, so a slow or dead receiver never slows the API server's requests;
beyond `buffer_size` pending events new ones are dropped and counted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import logging
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger(__name__)

DEFAULT_BATCH_MAX_SIZE = 400
DEFAULT_BATCH_MAX_WAIT = 30.0
DEFAULT_INITIAL_BACKOFF = 10.0
DEFAULT_BUFFER_SIZE = 10000
ATTEMPTS = 5  # the real webhook's backoff steps
BACKOFF_FACTOR = 1.5


@dataclass(frozen=True)
class WebhookTarget:
    """Where and how to POST: the URL, TLS trust and client identity, and the bearer token."""

    server: str
    ssl_context: ssl.SSLContext | None
    token: str = ""
    token_file: Path | None = None

    def headers(self) -> dict[str, str]:
        # A tokenFile is reread for each batch, so a rotated token is picked up.
        token = self.token_file.read_text(encoding="utf-8").strip() if self.token_file else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}


def _named(config: dict[str, Any], section: str, name: str | None) -> dict[str, Any]:
    entries = config.get(section) or []
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{section}: the webhook kubeconfig needs at least one entry")
    named = (entry for entry in entries if isinstance(entry, dict) and entry.get("name") == name)
    chosen = next(named, None) if name else None
    entry = chosen or entries[0]
    body = entry.get(section[:-1]) if isinstance(entry, dict) else None
    if not isinstance(body, dict):
        raise ValueError(f"{section}[].{section[:-1]}: must be a mapping")
    return body


def _pem(body: dict[str, Any], key: str) -> bytes | None:
    data = body.get(f"{key}-data")
    if data is None:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, TypeError) as error:
        raise ValueError(f"{key}-data: not base64") from error


def load_webhook_config(path: str | Path) -> WebhookTarget:
    """The target of a webhook kubeconfig: its current context (or first entries); relative
    file paths are taken from the kubeconfig's directory, as client-go does."""
    path = Path(path)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"audit webhook config {path}: must be a kubeconfig mapping")
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or []}
    context = contexts.get(config.get("current-context"), {})
    cluster = _named(config, "clusters", context.get("cluster"))
    user = _named(config, "users", context.get("user"))
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ValueError(f"audit webhook config {path}: clusters[].cluster.server must be an http(s) URL")

    def local(value: str | None) -> Path | None:
        return None if not value else path.parent / value

    context_ssl = None
    if server.startswith("https://"):
        ca_data = _pem(cluster, "certificate-authority")
        ca_file = local(cluster.get("certificate-authority"))
        context_ssl = ssl.create_default_context(
            cafile=str(ca_file) if ca_file and not ca_data else None,
            cadata=ca_data.decode() if ca_data else None,
        )
        if cluster.get("insecure-skip-tls-verify"):
            context_ssl.check_hostname = False
            context_ssl.verify_mode = ssl.CERT_NONE
        _load_client_certificate(context_ssl, user, local)
    token_file = local(user.get("tokenFile"))
    return WebhookTarget(server, context_ssl, str(user.get("token") or ""), token_file)


def _load_client_certificate(
    context: ssl.SSLContext, user: dict[str, Any], local: Callable[[str | None], Path | None]
) -> None:
    cert_data, key_data = _pem(user, "client-certificate"), _pem(user, "client-key")
    if cert_data or key_data:
        if not (cert_data and key_data):
            raise ValueError("users[].user: client-certificate-data needs client-key-data and back")
        # The ssl module loads key pairs only from files: a private directory, gone at once.
        with tempfile.TemporaryDirectory() as directory:
            cert, key = Path(directory, "tls.crt"), Path(directory, "tls.key")
            cert.write_bytes(cert_data)
            key.touch(mode=0o600)
            key.write_bytes(key_data)
            context.load_cert_chain(cert, key)
        return
    cert_file, key_file = local(user.get("client-certificate")), local(user.get("client-key"))
    if cert_file or key_file:
        if not (cert_file and key_file):
            raise ValueError("users[].user: client-certificate needs client-key and back")
        context.load_cert_chain(cert_file, key_file)


class BatchingWebhook:
    """Buffers events and sends them in EventLists from a task on the server's loop."""

    def __init__(
        self,
        target: WebhookTarget,
        *,
        max_size: int = DEFAULT_BATCH_MAX_SIZE,
        max_wait: float = DEFAULT_BATCH_MAX_WAIT,
        initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        request_timeout: float = 30.0,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if max_size < 1 or max_wait <= 0 or initial_backoff < 0 or buffer_size < max_size:
            raise ValueError("audit webhook batching: sizes and wait must be positive, buffer >= batch")
        self.target = target
        self.max_size = max_size
        self.max_wait = max_wait
        self.initial_backoff = initial_backoff
        self.buffer_size = buffer_size
        self.request_timeout = request_timeout
        self.shutdown_timeout = shutdown_timeout
        self.sent = 0  # events the receiver accepted
        self.dropped = 0  # events lost: buffer full, or their batch failed for good
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._first_at = 0.0  # loop time of the oldest buffered event
        self._wake = asyncio.Event()
        self._closing = False
        self._overflowed = False
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._closing = False
        self._session = aiohttp.ClientSession()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="zsp-sim-audit")

    def emit(self, event: dict[str, Any]) -> None:
        if self._closing or len(self._buffer) >= self.buffer_size:
            if not self._overflowed:
                log.warning("audit buffer full (%d events) or closing: dropping events", self.buffer_size)
            self._overflowed = True
            self.dropped += 1
            return
        if not self._buffer:
            self._first_at = asyncio.get_running_loop().time()
        self._buffer.append(event)
        if len(self._buffer) in (1, self.max_size):
            self._wake.set()

    async def close(self) -> None:
        """Send what is buffered (for at most `shutdown_timeout` seconds), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self.shutdown_timeout)
            except TimeoutError:
                self.dropped += len(self._buffer)
                log.error("audit webhook: %d events unsent at shutdown", len(self._buffer))
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._buffer or not self._closing:
            if not self._buffer:
                await self._sleep(None)
                continue
            remaining = self._first_at + self.max_wait - loop.time()
            if len(self._buffer) < self.max_size and not self._closing and remaining > 0:
                await self._sleep(remaining)
                continue
            batch = [self._buffer.popleft() for _ in range(min(self.max_size, len(self._buffer)))]
            self._first_at = loop.time()  # leftovers start the next batch's wait
            await self._send(batch)

    async def _sleep(self, seconds: float | None) -> None:
        """Until an event worth acting on is emitted, or for `seconds` at most."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        assert self._session is not None
        body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": batch}
        delay = self.initial_backoff
        problem = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._session.post(
                    self.target.server,
                    json=body,
                    headers=self.target.headers(),
                    ssl=self.target.ssl_context if self.target.ssl_context is not None else True,
                    timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                ) as response:
                    if response.status < 300:
                        self.sent += len(batch)
                        return
                    problem = f"HTTP {response.status}: {(await response.text())[:200]}"
                    # Like client-go's webhook: a server error or 429 is transient, other answers final.
                    transient = response.status >= 500 or response.status == 429
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                problem, transient = f"{type(error).__name__}: {error}", True
            if not transient or attempt == ATTEMPTS:
                break
            log.info("audit webhook attempt %d failed (%s); retrying in %.1fs", attempt, problem, delay)
            await asyncio.sleep(delay)
            delay *= BACKOFF_FACTOR
        self.dropped += len(batch)
        log.error("audit webhook: dropped a batch of %d events: %s", len(batch), problem)
