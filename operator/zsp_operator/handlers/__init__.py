"""kopf glue: each handler turns a body into one call on the controller.

Handlers are registered on a fresh `kopf.OperatorRegistry` per operator instance, so a
test (or `zsp demo`) can run its own operator without touching kopf's global registry.
"""

from __future__ import annotations

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


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    for module in (setup, requests, grants, drift, webhooks, standing):
        module.register(registry)
    return registry


def build_standby_registry() -> kopf.OperatorRegistry:
    """Admission only, so every replica can be Ready behind the webhook Service."""
    registry = kopf.OperatorRegistry()
    setup.register(registry, standby=True)
    webhooks.register(registry)
    standby.register(registry)
    return registry
