"""Admission answered on a thread and event loop of its own, never behind the engine's work.

kopf serves its webhooks on the loop that also delivers every watch event and runs every
issuance and revocation. Under a burst (a thousand grants ending) each `kubectl apply` of an
AccessRequest then waited behind the engine: hundreds of milliseconds per admission call.
Here the same kopf webhook server listens and answers on a loop in a separate thread. The
admission handlers are coroutines that only read (the policies the engine keeps current, the
clock, the operator's identity), so nothing they touch needs the engine's loop; the GIL hands
the thread its turn within the interpreter's switch interval however busy the engine is.

kopf's own context (where it posts Kubernetes Events from log records) is carried into the
thread, and its posting is thread-safe.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import kopf
from aiohttp import web

log = logging.getLogger(__name__)

_STOP_WITHIN = 10.0  # seconds a stopping admission loop may take to close its connections


class OwnLoopWebhookServer(kopf.WebhookServer):
    """kopf's WebhookServer, its aiohttp site run by an event loop in a thread of its own."""

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:  # kopf's WebhookFn, WebhookClientConfig
        cadata, context = self._build_ssl()
        port = self.port or self._allocate_free_port()
        started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        stopped = threading.Event()
        carried = contextvars.copy_context()

        async def serve(request: web.Request) -> web.Response:
            return await self._serve(fn, request)

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            path = self.path.rstrip("/") if self.path else ""
            app = web.Application()
            app.add_routes([web.post(f"{path}/{{id:.*}}", serve)])
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            try:
                loop.run_until_complete(runner.setup())
                site = web.TCPSite(
                    runner, self.addr or None, port, ssl_context=context, reuse_port=True, reuse_address=True
                )
                loop.run_until_complete(site.start())
            except BaseException as error:
                started.set_exception(error)
                loop.close()
                stopped.set()
                return
            started.set_result(loop)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()
                stopped.set()

        thread = threading.Thread(target=carried.run, args=(run,), name="zsp-admission", daemon=True)
        thread.start()
        loop = await asyncio.wrap_future(started)
        try:
            schema = "http" if context is None else "https"
            host = self.host or self.DEFAULT_HOST or self._get_accessible_addr(self.addr)
            client_config: dict[str, Any] = {"url": self._build_url(schema, host, port, self.path or "")}
            if cadata is not None:
                client_config["caBundle"] = base64.b64encode(cadata).decode("ascii")
            log.debug("admission webhooks answered on their own loop at port %d", port)
            yield client_config
            await asyncio.Event().wait()  # until kopf stops serving
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(stopped.wait, _STOP_WITHIN)
