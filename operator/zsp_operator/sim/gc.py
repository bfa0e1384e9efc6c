"""The garbage collector and the namespace lifecycle controller.

Garbage collection follows ownerReferences by uid: once an owner is gone, each
dependent with no other live owner is deleted (background, recursively); a dependent
that still has a live owner just loses the dangling reference. An owner deleted with
`Orphan` has its references removed from the dependents before it goes; one deleted
with `Foreground` deletes its dependents first and waits for those that set
`blockOwnerDeletion`. A dependent whose owners never existed is deleted too.
A terminating namespace has its contents deleted (their finalizers are honoured),
then loses its `kubernetes` spec finalizer and vanishes.
"""

from __future__ import annotations

from zsp_operator.sim.deletion import FOREGROUND, ORPHAN, Deleter
from zsp_operator.sim.objects import Objects, is_deleting
from zsp_operator.sim.store import Change, Obj, StorageKey, namespace_of, uid_of

NAMESPACES: StorageKey = ("", "namespaces")


class GarbageCollector:
    def __init__(self, objects: Objects, deleter: Deleter) -> None:
        self.objects = objects
        self.store = objects.store
        self.deleter = deleter

    def handle(self, change: Change) -> None:
        obj = change.obj
        if change.type == "DELETED":
            self._collect_dependents(uid_of(obj))
            self._recheck_foreground_owners(obj)
            self._recheck_namespace(obj)
            return
        if change.key == NAMESPACES and is_deleting(obj):
            self._drain_namespace(obj["metadata"]["name"])
        if is_deleting(obj):
            finalizers = obj["metadata"].get("finalizers") or []
            if ORPHAN in finalizers:
                self._orphan(change.key, obj)
            elif FOREGROUND in finalizers:
                self._foreground(change.key, obj)
        if obj["metadata"].get("ownerReferences") and not is_deleting(obj):
            self._delete_if_all_owners_absent(change.key, obj)

    def _delete(self, key: StorageKey, obj: Obj, policy: str) -> None:
        rtype = self.objects.registry.any_version(*key)
        if rtype is None:
            meta = obj["metadata"]
            self.store.remove(key, meta.get("namespace", ""), meta["name"])
            return
        self.deleter.delete_now(rtype, obj, policy)

    def _owner_exists(self, uid: str) -> bool:
        return self.store.by_uid(uid) is not None

    def _collect_dependents(self, uid: str) -> None:
        for key, dependent in self.store.dependents_of(uid):
            refs = dependent["metadata"].get("ownerReferences") or []
            if any(self._owner_exists(ref.get("uid", "")) for ref in refs):
                dependent["metadata"]["ownerReferences"] = [ref for ref in refs if ref.get("uid") != uid]
                self.objects.system_update(key, dependent)
            elif not is_deleting(dependent):
                self._delete(key, dependent, "Background")

    def _delete_if_all_owners_absent(self, key: StorageKey, obj: Obj) -> None:
        refs = obj["metadata"].get("ownerReferences") or []
        if not any(self._owner_exists(ref.get("uid", "")) for ref in refs):
            self._delete(key, obj, "Background")

    def _orphan(self, key: StorageKey, owner: Obj) -> None:
        uid = uid_of(owner)
        for dependent_key, dependent in self.store.dependents_of(uid):
            refs = dependent["metadata"].get("ownerReferences") or []
            remaining = [ref for ref in refs if ref.get("uid") != uid]
            if remaining:
                dependent["metadata"]["ownerReferences"] = remaining
            else:
                dependent["metadata"].pop("ownerReferences", None)
            self.objects.system_update(dependent_key, dependent)
        self._drop_finalizer(key, owner, ORPHAN)

    def _foreground(self, key: StorageKey, owner: Obj) -> None:
        uid = uid_of(owner)
        for dependent_key, dependent in self.store.dependents_of(uid):
            if not is_deleting(dependent):
                self._delete(dependent_key, dependent, "Foreground")
        blocking = [
            dependent
            for _, dependent in self.store.dependents_of(uid)
            if any(
                ref.get("uid") == uid and ref.get("blockOwnerDeletion")
                for ref in dependent["metadata"].get("ownerReferences") or []
            )
        ]
        if not blocking:
            self._drop_finalizer(key, owner, FOREGROUND)

    def _recheck_foreground_owners(self, obj: Obj) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            found = self.store.by_uid(ref.get("uid", ""))
            if found is None:
                continue
            key, owner = found
            if is_deleting(owner) and FOREGROUND in (owner["metadata"].get("finalizers") or []):
                self._foreground(key, owner)

    def _drop_finalizer(self, key: StorageKey, obj: Obj, finalizer: str) -> None:
        meta = obj["metadata"]
        fresh = self.store.get(key, meta.get("namespace", ""), meta["name"])
        if fresh is None:
            return
        fresh["metadata"]["finalizers"] = [
            f for f in fresh["metadata"].get("finalizers") or [] if f != finalizer
        ]
        self.objects.system_update(key, fresh)

    # --- namespaces ---------------------------------------------------------------------------

    def _recheck_namespace(self, obj: Obj) -> None:
        namespace = namespace_of(obj)
        if not namespace:
            return
        stored = self.store.get(NAMESPACES, "", namespace)
        if stored is not None and is_deleting(stored):
            self._drain_namespace(namespace)

    def _drain_namespace(self, name: str) -> None:
        for key, obj in self.store.in_namespace(name):
            if not is_deleting(obj):
                self._delete(key, obj, "Background")
        if self.store.in_namespace(name):
            return  # finalizers of the contents still hold; retried when each is gone
        namespace = self.store.get(NAMESPACES, "", name)
        if namespace is None:
            return
        spec = namespace.setdefault("spec", {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != "kubernetes"]
        self.objects.system_update(NAMESPACES, namespace)
