"""In-process controllers: what kube-controller-manager and apiextensions do in a real cluster.

- CustomResourceDefinitions: served as soon as they are stored, status set to
  NamesAccepted/Established; on deletion their objects are deleted, then the CRD goes
  and its kind stops being served.
- ClusterRole aggregation (`aggregationRule.clusterRoleSelectors`).
- A `default` ServiceAccount in every new namespace.
- The garbage collector and namespace lifecycle (`gc.py`).

Changes are queued synchronously by the store and handled by one task, shortly after
the write that caused them, as a real controller would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from zsp_operator.sim.deletion import Deleter
from zsp_operator.sim.gc import NAMESPACES, GarbageCollector
from zsp_operator.sim.objects import Objects, is_deleting, rfc3339
from zsp_operator.sim.selectors import label_selector_object_matches
from zsp_operator.sim.store import Change, Obj, StorageKey

log = logging.getLogger(__name__)

CRDS: StorageKey = ("apiextensions.k8s.io", "customresourcedefinitions")
CLUSTER_ROLES: StorageKey = ("rbac.authorization.k8s.io", "clusterroles")
SERVICE_ACCOUNTS: StorageKey = ("", "serviceaccounts")
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


class Controllers:
    def __init__(self, objects: Objects, deleter: Deleter) -> None:
        self.objects = objects
        self.store = objects.store
        self.registry = objects.registry
        self.deleter = deleter
        self.gc = GarbageCollector(objects, deleter)
        self._queue: asyncio.Queue[Change] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._roles_changed = False
        self.store.add_listener(self._on_change)

    def _on_change(self, change: Change) -> None:
        # Serving follows the stored CRD at once, so a client may create objects right after.
        if change.key == CRDS:
            if change.type == "DELETED":
                self.registry.stop_serving_crd(change.obj["metadata"]["name"])
            else:
                self.registry.serve_crd(change.obj)
        self._queue.put_nowait(change)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="zsp-sim-controllers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def settle(self) -> None:
        """Wait until every queued change has been handled."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            change = await self._queue.get()
            try:
                self._handle(change)
            except Exception:
                log.exception("in-memory API server controller failed on %s", change.key)
            finally:
                self._queue.task_done()

    def _handle(self, change: Change) -> None:
        if change.key == CRDS:
            self._reconcile_crd(change)
        elif change.type == "DELETED" and change.key[0] and "." in change.key[0]:
            self._recheck_crd_of(change.key)
        if change.key == CLUSTER_ROLES:
            self._roles_changed = True
        if self._roles_changed and self._queue.empty():  # once after a burst of ClusterRole writes
            self._roles_changed = False
            self._aggregate_cluster_roles()
        if change.key == NAMESPACES and change.type == "ADDED":
            self._create_default_service_account(change.obj["metadata"]["name"])
        self.gc.handle(change)

    # --- CRDs ---------------------------------------------------------------------------------

    def _reconcile_crd(self, change: Change) -> None:
        if change.type == "DELETED":
            return
        crd = self.store.get(CRDS, "", change.obj["metadata"]["name"])
        if crd is None:
            return
        if is_deleting(crd):
            self._clean_up_crd(crd)
            return
        status = established_status(crd, rfc3339(self.objects.clock()), crd.get("status"))
        if status != crd.get("status"):
            crd["status"] = status
            self.objects.system_update(CRDS, crd)

    def _recheck_crd_of(self, key: StorageKey) -> None:
        group, plural = key
        crd = self.store.get(CRDS, "", f"{plural}.{group}")
        if crd is not None and is_deleting(crd):
            self._clean_up_crd(crd)

    def _clean_up_crd(self, crd: Obj) -> None:
        spec = crd["spec"]
        key = (spec["group"], spec["names"]["plural"])
        rtype = self.registry.any_version(*key)
        remaining = self.store.list(key)
        for obj in remaining:
            if rtype is not None and not is_deleting(obj):
                self.deleter.delete_now(rtype, obj, "Background")
        if self.store.list(key):
            return
        crd["metadata"]["finalizers"] = [
            f for f in crd["metadata"].get("finalizers") or [] if f != CRD_CLEANUP
        ]
        self.objects.system_update(CRDS, crd)

    # --- ClusterRole aggregation ---------------------------------------------------------------

    def _aggregate_cluster_roles(self) -> None:
        roles = self.store.list(CLUSTER_ROLES)
        for role in roles:
            selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors")
            if not selectors:
                continue
            rules: list[Any] = []
            for other in roles:
                if other["metadata"]["name"] == role["metadata"]["name"]:
                    continue
                labels = other["metadata"].get("labels")
                if any(label_selector_object_matches(selector, labels) for selector in selectors):
                    rules += [rule for rule in other.get("rules") or [] if rule not in rules]
            if rules != (role.get("rules") or []):
                role["rules"] = rules
                self.objects.system_update(CLUSTER_ROLES, role)

    # --- namespaces ---------------------------------------------------------------------------

    def _create_default_service_account(self, namespace: str) -> None:
        if self.store.get(SERVICE_ACCOUNTS, namespace, "default") is not None:
            return
        self.store.put(
            SERVICE_ACCOUNTS,
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "default",
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": rfc3339(self.objects.clock()),
                },
            },
        )


def established_status(crd: Obj, now: str, current: dict[str, Any] | None) -> dict[str, Any]:
    """The status the apiextensions controllers give an accepted CRD (times kept once set)."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    previous = {c.get("type"): c for c in (current or {}).get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
        old = previous.get(kind) or {}
        since = old.get("lastTransitionTime", now) if old.get("status") == "True" else now
        return {
            "type": kind,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": since,
        }

    stored = list((current or {}).get("storedVersions") or [])
    for version in spec.get("versions") or []:
        if version.get("storage") and version["name"] not in stored:
            stored.append(version["name"])
    return {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    }
