"""Run the operator: kopf with our handlers, the controller in its memo, /metrics beside it.

Everything a test or `zsp demo` needs to swap (the API client, the clock, where audit
records go) is a parameter here, never a flag inside the product code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zsp_operator.engine.controller import Controller
from zsp_operator.handlers import build_registry, build_standby_registry
from zsp_operator.kube import Kube
from zsp_operator.observe.metrics import Metrics
from zsp_operator.process.leader import LeaderElector, LeadershipLost
from zsp_operator.serving.auditsink import audit_sink
from zsp_operator.settings import Settings

log = logging.getLogger(__name__)


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


async def run_operator(
    settings: Settings,
    *,
    kube: Kube | None = None,
    controller: Controller | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    elector: LeaderElector | None = None,
) -> None:
    """Run until `stop_flag` is set, or a signal arrives (`zsp run`).

    With leader election, stand by until this replica holds the Lease, then run;
    raise LeadershipLost if the Lease slips away, so the process exits and restarts
    as a standby rather than risk two active replicas.
    """
    owned = kube is None and controller is None
    if controller is None:
        kube = kube or await Kube.connect(settings.kubeconfig, settings.context)
        controller = Controller.build(kube, settings)
    try:
        async with metrics_server(controller.observer.metrics, settings.metrics_port):
            if not settings.leader_elect:
                await _run_kopf(settings, controller, stop_flag, ready_flag, build_registry())
                return
            elector = elector or LeaderElector.from_settings(controller.kube, settings)
            stop = stop_flag or asyncio.Event()
            _signals_set(stop)
            if await _stand_by(settings, controller, elector, stop):
                await _lead(settings, controller, elector, stop, ready_flag)
    finally:
        if owned:
            await controller.kube.close()


async def _stand_by(
    settings: Settings, controller: Controller, elector: LeaderElector, stop: asyncio.Event
) -> bool:
    """Answer admission until this replica holds the Lease; False if stopped first.

    The tasks that wait for the Lease and for `stop` exist before kopf starts: when kopf
    stops, it cancels every task of the loop started after it.
    """
    done_standing_by = asyncio.Event()
    acquiring = asyncio.create_task(elector.acquire())
    acquiring.add_done_callback(lambda _: done_standing_by.set())
    relaying = asyncio.create_task(_relay(stop, done_standing_by))
    try:
        await _run_kopf(
            settings,
            controller,
            done_standing_by,
            None,
            _taking_signals(build_standby_registry(), stop),
            acting=False,
        )
    finally:
        relaying.cancel()
        if not acquiring.done():
            acquiring.cancel()  # a signal, or `stop`: no Lease wanted any more
        await asyncio.gather(acquiring, relaying, return_exceptions=True)
    if acquiring.cancelled():
        return False
    acquiring.result()  # raises what went wrong while waiting
    if stop.is_set():
        await elector.release()
        return False
    return True


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _lead(
    settings: Settings,
    controller: Controller,
    elector: LeaderElector,
    stop: asyncio.Event,
    ready_flag: asyncio.Event | None,
) -> None:
    """Run kopf while the Lease is ours: stop it when told to, or when the Lease is lost."""
    halt = asyncio.Event()
    lost: list[LeadershipLost] = []

    async def keep_lease() -> None:
        try:
            await elector.keep()
        except LeadershipLost as err:
            log.error("stepping down: %s", err)
            lost.append(err)
            halt.set()

    helpers = [asyncio.create_task(keep_lease()), asyncio.create_task(_relay(stop, halt))]
    try:
        await _run_kopf(settings, controller, halt, ready_flag, _taking_signals(build_registry(), stop))
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if not lost:
            # Stopped, or crashed: nothing of ours runs any more, so a standby need not wait.
            await elector.release()
    if lost:
        raise lost[0]


async def _run_kopf(
    settings: Settings,
    controller: Controller,
    stop_flag: asyncio.Event | None,
    ready_flag: asyncio.Event | None,
    registry: kopf.OperatorRegistry,
    *,
    acting: bool = True,
) -> None:
    namespaces = settings.namespaces
    async with _evidence(settings, controller, acting):
        await kopf.operator(
            registry=registry,
            memo=kopf.Memo(controller=controller, settings=settings),
            clusterwide=not namespaces,
            namespaces=namespaces,
            # The Lease (--leader-elect) decides which replica acts; kopf's peering stays off.
            standalone=True,
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"
            if settings.health_port
            else None,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )


@contextlib.asynccontextmanager
async def _evidence(settings: Settings, controller: Controller, acting: bool) -> AsyncIterator[None]:
    """The audit webhook, served by the replica that acts only: a standby has no grants to attribute to."""
    usage = controller.usage
    if usage is None or not acting:
        yield
        return
    rejected = controller.observer.metrics.audit_rejected
    async with audit_sink(settings, usage.receive, lambda reason: rejected.labels(reason).inc()):
        yield


def _taking_signals(registry: kopf.OperatorRegistry, stop: asyncio.Event) -> kopf.OperatorRegistry:
    """SIGTERM and SIGINT set `stop` in every phase of an elected replica.

    kopf installs its own handlers when it starts and never removes them, so between a
    standby's kopf and the leader's a signal would go to a kopf that has already stopped.
    Ours, put back as each kopf starts, stop whichever runs through its stop flag.
    """

    @kopf.on.startup(registry=registry)
    async def signals_stop_this_replica(**_: object) -> None:
        _signals_set(stop)

    return registry


def _signals_set(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError, NotImplementedError):
            return  # not the main thread (a test's replica): its stop flag is the way to stop it
