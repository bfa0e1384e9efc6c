"""kopf glue: the operator's start and stop, and its admission webhooks.

Handlers are registered on a fresh `kopf.OperatorRegistry` per operator instance, so a
test (or `zsp demo`) can run its own operator without touching kopf's global registry.

Watch events do not come through kopf: the engine's own informers (`engine.watches`) list a
page at a time and hand each object's events on in order. kopf's watching read each kind's
first listing whole and kept a worker with the object's last body per object; at ten
thousand grants that was most of the operator's memory and a quarter of its CPU.
"""

from __future__ import annotations

import kopf

from zsp_operator.handlers import setup, webhooks

__all__ = ["build_registry", "build_standby_registry", "setup", "webhooks"]


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    setup.register(registry)
    webhooks.register(registry)
    return registry


def build_standby_registry() -> kopf.OperatorRegistry:
    """Admission only, so every replica can be Ready behind the webhook Service."""
    registry = kopf.OperatorRegistry()
    setup.register(registry, standby=True)
    webhooks.register(registry)
    return registry
