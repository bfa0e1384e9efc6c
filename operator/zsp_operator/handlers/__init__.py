"""kopf glue: each handler turns a body into one call on the controller.

Handlers are registered on a fresh `kopf.OperatorRegistry` per operator instance, so a
test (or `zsp demo`) can run its own operator without touching kopf's global registry.
"""

from __future__ import annotations

import kopf

from zsp_operator.handlers import drift, grants, requests, setup, sweep, webhooks

__all__ = ["build_registry", "drift", "grants", "requests", "setup", "sweep", "webhooks"]


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    for module in (setup, requests, grants, drift, webhooks, sweep):
        module.register(registry)
    return registry
