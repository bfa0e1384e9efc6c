"""kopf glue: each handler turns a body into one call on the controller.

Handlers are registered on a fresh `kopf.OperatorRegistry` per operator instance, so a
test (or `zsp demo`) can run its own operator without touching kopf's global registry.
"""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.handlers import drift, grants, requests, setup, standby, standing, webhooks

__all__ = [
    "build_registry",
    "build_standby_registry",
    "drift",
    "grants",
    "requests",
    "setup",
    "standby",
    "standing",
    "webhooks",
]


# Seconds a kopf worker of one object waits for that object's next event before it ends
# (kopf's default is 5). A worker keeps the object's last event, the whole body, while it
# waits: at start-up every watched kind is listed whole and gets one worker per object, so with
# ten thousand grants that was several hundred MB for five seconds, and the allocator kept most
# of it afterwards. The handlers here keep no state in the worker: a later event starts a new one.
WORKER_IDLE_SECONDS = 0.5


def _register_workers(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.startup(id="workers", registry=registry)
    async def workers(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.queueing.idle_timeout = WORKER_IDLE_SECONDS


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    for module in (setup, requests, grants, drift, webhooks, standing):
        module.register(registry)
    _register_workers(registry)
    return registry


def build_standby_registry() -> kopf.OperatorRegistry:
    """Admission only, so every replica can be Ready behind the webhook Service."""
    registry = kopf.OperatorRegistry()
    setup.register(registry, standby=True)
    webhooks.register(registry)
    standby.register(registry)
    _register_workers(registry)
    return registry
