"""A standby replica answers admission from its own view of the policies, and does nothing else."""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.handlers.common import POLICIES, controller_of


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(*POLICIES, id="policy-view", registry=registry)
    def policy(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
        view = controller_of(memo).view
        if event["type"] == "DELETED":
            view.drop_policy(event["object"].get("metadata", {}).get("name", ""))
        else:  # the initial listing (no type) too: it may be newer than the start's list
            view.put_policy(dict(event["object"]))
