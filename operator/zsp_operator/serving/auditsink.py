"""The audit webhook: the API server posts `audit.k8s.io/v1` EventLists here (docs/evidence.md).

Only the API server is believed. A post must come with the bearer token of the webhook
kubeconfig the API server was given (`--audit-webhook-token-file`) or a client certificate
signed by `--audit-webhook-client-ca`; anything else is answered 401 and counted, so nobody
can forge evidence of use, or bury it, by posting events. A post that is not an EventList,
or is larger than `--audit-webhook-max-body`, is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from zsp_operator.core.usage import AuditEventsError, Use, read_event_list
from zsp_operator.serving.pki import TLS_CERT, TLS_KEY
from zsp_operator.serving.webhookcert import ReloadableContext, refresh_forever
from zsp_operator.settings import Settings

log = logging.getLogger(__name__)

PATH = "/audit"


class _Token:
    """The expected bearer token, re-read when its file changes (a rotated Secret)."""

    def __init__(self, path: str | None) -> None:
        self._path = Path(path) if path else None
        self._stamp: float | None = None
        self._value = b""

    def matches(self, presented: str) -> bool:
        if self._path is None:
            return False
        stamp = self._path.stat().st_mtime
        if stamp != self._stamp:
            self._value = self._path.read_text(encoding="utf-8").strip().encode()
            self._stamp = stamp
        return bool(self._value) and hmac.compare_digest(presented.encode(), self._value)


def tls_context(settings: Settings) -> ReloadableContext:
    """Serving certificate from the cert dir (re-read as it is renewed); client certificates
    checked against the client CA."""
    directory = Path(settings.audit_webhook_cert_dir or ".")
    served = ReloadableContext(directory / TLS_CERT, directory / TLS_KEY)
    served.context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.audit_webhook_client_ca:
        served.context.load_verify_locations(settings.audit_webhook_client_ca)
        # Optional: a post may use the token instead; a certificate it does send must verify.
        served.context.verify_mode = ssl.CERT_OPTIONAL
    return served


Receive = Callable[[list[Use]], None]
Refused = Callable[[str], None]  # told why a post was refused: unauthenticated, malformed, too-large


def audit_app(settings: Settings, receive: Receive, refused: Refused) -> web.Application:
    """POST /audit, authenticated, size-limited, parsed; `receive` gets the events that may be evidence."""
    token = _Token(settings.audit_webhook_token_file)
    limit = settings.audit_webhook_max_body

    def authenticated(request: web.Request) -> bool:
        if request.transport is not None and request.transport.get_extra_info("peercert"):
            return True  # verified against the client CA during the handshake
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.matches(presented.strip())

    def refuse(reason: str, status: int, message: str) -> web.Response:
        refused(reason)
        return web.json_response({"kind": "Status", "status": "Failure", "message": message}, status=status)

    async def post(request: web.Request) -> web.Response:
        if not authenticated(request):
            return refuse("unauthenticated", 401, "the audit webhook takes events from the API server only")
        # Refused before reading when the length is declared, else after reading one byte too many.
        too_large = request.content_length is not None and request.content_length > limit
        body = b"" if too_large else await request.content.read(limit + 1)
        if too_large or len(body) > limit:
            return refuse("too-large", 413, f"body over {limit} bytes: lower --audit-webhook-batch-max-size")
        try:
            uses = read_event_list(body)
        except AuditEventsError as err:
            return refuse("malformed", 400, str(err))
        receive(uses)
        return web.json_response({})

    # aiohttp's own body limit stays above ours, so ours answers (and counts) first.
    app = web.Application(client_max_size=limit + 1024)
    app.router.add_post(PATH, post)
    return app


@contextlib.asynccontextmanager
async def audit_sink(settings: Settings, receive: Receive, refused: Refused) -> AsyncIterator[int]:
    """Serve the audit webhook while the context lasts; yields the port (0: off)."""
    if not settings.audit_webhook_port:
        yield 0
        return
    served = tls_context(settings)

    async def reload() -> None:
        served.reload()

    runner = web.AppRunner(audit_app(settings, receive, refused), access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner,
        "127.0.0.1" if settings.dev else "0.0.0.0",  # noqa: S104 - the API server calls it from outside the pod
        settings.audit_webhook_port,
        ssl_context=served.context,
    )
    await site.start()
    renewing = asyncio.create_task(refresh_forever(reload, settings.webhook_cert_refresh))
    log.info("audit webhook listening on port %d%s", settings.audit_webhook_port, PATH)
    try:
        yield settings.audit_webhook_port
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
        await runner.cleanup()
