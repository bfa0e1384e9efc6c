"""DELETE and deletecollection: DeleteOptions, preconditions, finalizers, propagation policies.

An object without finalizers vanishes at once (DELETED event). One with finalizers gets
`deletionTimestamp` and stays until its finalizers are emptied. `Orphan` and
`Foreground` add the `orphan` / `foregroundDeletion` finalizers that the garbage
collector (`gc.py`) acts on; `Background` leaves dependents to the collector after
the owner is gone. Grace periods are not simulated: deletion is immediate.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from zsp_operator.sim import errors as E
from zsp_operator.sim.admission import AdmissionRequest
from zsp_operator.sim.objects import Objects, RequestContext, blocks_removal, is_deleting, present, rfc3339
from zsp_operator.sim.resources import ResourceType
from zsp_operator.sim.store import Obj

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
POLICIES = ("Background", "Foreground", "Orphan")


def propagation_policy(rtype: ResourceType, options: dict[str, Any]) -> str:
    policy = options.get("propagationPolicy")
    if policy:
        if policy not in POLICIES:
            raise E.invalid_object(
                "DeleteOptions", "", "", [E.not_supported("propagationPolicy", policy, list(POLICIES))]
            )
        return str(policy)
    orphan = options.get("orphanDependents")
    if orphan is not None:
        return "Orphan" if orphan else "Background"
    return rtype.default_propagation


class Deleter:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self.store = objects.store

    async def delete(
        self, ctx: RequestContext, rtype: ResourceType, namespace: str, name: str, options: dict[str, Any]
    ) -> tuple[int, Obj]:
        """(HTTP status, body) of a DELETE on one object."""
        current = self.objects.get(rtype, namespace, name)
        _check_preconditions(rtype, current, options.get("preconditions") or {})
        policy = propagation_policy(rtype, options)
        request = AdmissionRequest(
            rtype, "DELETE", name, namespace, ctx.user, None, current, dry_run=ctx.dry_run
        )
        await self.objects.admission.mutate(request)
        await self.objects.admission.validate(request)
        current = self.objects.get(rtype, namespace, name)  # webhooks may have taken a while
        if ctx.dry_run:
            return 200, current
        deleted, body = self.delete_now(rtype, current, policy)
        if not deleted and options.get("orphanDependents") is False:
            return 202, body  # kept for clients of the deprecated option, as the real server does
        return 200, body

    def delete_now(self, rtype: ResourceType, current: Obj, policy: str) -> tuple[bool, Obj]:
        """Delete without admission (also used by controllers); (removed at once?, response body)."""
        meta = current["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        if is_deleting(current):
            return False, current
        updated = copy.deepcopy(current)
        finalizers = list(meta.get("finalizers") or [])
        wanted = {"Orphan": ORPHAN, "Foreground": FOREGROUND}.get(policy)
        if wanted and wanted not in finalizers:
            finalizers.append(wanted)
        if finalizers:
            updated["metadata"]["finalizers"] = finalizers
        if blocks_removal(updated):
            updated["metadata"]["deletionTimestamp"] = rfc3339(self.objects.clock())
            updated["metadata"]["deletionGracePeriodSeconds"] = 0
            if rtype.has_generation:
                updated["metadata"]["generation"] = int(meta.get("generation") or 0) + 1
            if rtype.group == "" and rtype.plural == "namespaces":
                updated.setdefault("status", {})["phase"] = "Terminating"
            return False, present(rtype, self.store.put(rtype.storage_key, updated))
        removed = self.store.remove(rtype.storage_key, namespace, name) or current
        if rtype.returns_deleted_object:
            return True, present(rtype, removed)
        details: dict[str, Any] = {"name": name, "kind": rtype.plural, "uid": meta.get("uid")}
        if rtype.group:
            details["group"] = rtype.group
        return True, {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    async def delete_collection(
        self,
        ctx: RequestContext,
        rtype: ResourceType,
        namespace: str | None,
        matches: Callable[[Obj], bool],
        options: dict[str, Any],
    ) -> Obj:
        """Delete every matching object; answers with the list of what was deleted."""
        listed = self.objects.list(rtype, namespace, matches)
        deleted = []
        for item in listed["items"]:
            meta = item["metadata"]
            try:
                _, body = await self.delete(ctx, rtype, meta.get("namespace", ""), meta["name"], options)
            except E.ApiError as error:
                if error.code == 404:
                    continue
                raise
            deleted.append(body if body.get("kind") == rtype.kind else item)
        listed["items"] = deleted
        listed["metadata"]["resourceVersion"] = str(self.store.resource_version)
        return listed


def _check_preconditions(rtype: ResourceType, current: Obj, preconditions: dict[str, Any]) -> None:
    meta = current["metadata"]
    name = meta["name"]
    if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
        raise E.conflict(
            rtype.group_resource,
            name,
            f"Precondition failed: UID in precondition: "
            f"{preconditions['uid']}, UID in object meta: {meta.get('uid')}",
        )
    wanted_rv = preconditions.get("resourceVersion")
    if wanted_rv and wanted_rv != meta.get("resourceVersion"):
        raise E.conflict(
            rtype.group_resource,
            name,
            f"Precondition failed: ResourceVersion in precondition: "
            f"{wanted_rv}, ResourceVersion in object meta: {meta.get('resourceVersion')}",
        )


__all__ = ["FOREGROUND", "ORPHAN", "Deleter", "is_deleting"]
