"""Run the operator: kopf with our handlers, the controller in its memo, /metrics beside it.

Everything a test or `zsp demo` needs to swap (the API client, the clock, where audit
records go) is a parameter here, never a flag inside the product code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import IO, Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zsp_operator.config import Settings
from zsp_operator.controller import Clock, Controller, utcnow
from zsp_operator.handlers import build_registry
from zsp_operator.kube import Kube
from zsp_operator.observe import AuditLog, Metrics, Observer

log = logging.getLogger(__name__)
StopFlag = asyncio.Event | asyncio.Future[Any] | threading.Event


@contextlib.asynccontextmanager
async def metrics_server(metrics: Metrics, port: int) -> AsyncIterator[None]:
    """Serve /metrics on `port` (0 disables it) for as long as the context lasts."""
    if not port:
        yield
        return

    async def scrape(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", port)  # noqa: S104 - scraped from inside the cluster
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


def build_controller(
    kube: Kube,
    settings: Settings,
    *,
    clock: Clock = utcnow,
    audit_stream: IO[str] | None = None,
    metrics: Metrics | None = None,
) -> Controller:
    observer = Observer(kube, AuditLog(clock, audit_stream, settings.audit_file), metrics or Metrics(), clock)
    return Controller(kube, settings, observer, clock=clock)


async def run_operator(
    settings: Settings,
    *,
    kube: Kube | None = None,
    controller: Controller | None = None,
    stop_flag: StopFlag | None = None,
    ready_flag: StopFlag | None = None,
) -> None:
    """Run until `stop_flag` is set (or a signal arrives when run from `zsp run`)."""
    owned = kube is None and controller is None
    if controller is None:
        kube = kube or await Kube.connect(settings.kubeconfig, settings.context)
        controller = build_controller(kube, settings)
    namespaces = settings.namespaces
    try:
        async with metrics_server(controller.observer.metrics, settings.metrics_port):
            await kopf.operator(
                registry=build_registry(),
                memo=kopf.Memo(controller=controller, settings=settings),
                clusterwide=not namespaces,
                namespaces=namespaces,
                standalone=settings.standalone,
                priority=settings.priority,
                # A named peering makes kopf wait for its peering CRD, so only when asked for.
                peering_name=None if settings.standalone else settings.peering,
                liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"
                if settings.health_port
                else None,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
    finally:
        if owned:
            await controller.kube.close()

