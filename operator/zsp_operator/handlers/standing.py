"""Standing-privilege handlers: grant events go to the sweeper.

The cluster's bindings, Roles and namespaces reach it through the engine's own informers
(`engine.watches`), not through kopf.
"""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.engine.sweeper import Sweeper
from zsp_operator.handlers.common import GRANTS, controller_of


def sweeper_of(memo: Any) -> Sweeper | None:
    """The engine's sweeper once it has started (it needs the operator's own identity first)."""
    sweeper = controller_of(memo).sweeper
    return sweeper if sweeper.running else None


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(*GRANTS, id="sweep-grants", registry=registry)
    async def grant(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        sweeper = sweeper_of(memo)
        if sweeper is not None:
            await sweeper.grant_event(event["type"], dict(event["object"]))
