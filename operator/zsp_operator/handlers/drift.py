"""What can make a live grant wrong: its policy changing or going.

Namespace relabels and grantee ServiceAccounts reach the grant tracker through the engine's
own informers (`engine.watches`).
"""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.handlers.common import POLICIES, controller_of


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(*POLICIES, id="policy-drift", registry=registry)
    async def policy(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        if event["type"] is not None:
            await controller_of(memo).grant_tracker.policy_changed(
                dict(event["object"]), deleted=event["type"] == "DELETED"
            )
