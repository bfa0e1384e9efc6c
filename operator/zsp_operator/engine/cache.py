"""An informer-style cache of the objects the operator acts on, fed by the watches it keeps.

Reads on the lifecycle's path come from here, never from the API server: RoleBindings and
ClusterRoleBindings (the sweeper judges every one), Roles and ClusterRoles (the rules a
verdict or the catalog depends on), the ServiceAccounts the operator minted, and the
AccessRequests still in flight. The operator's own writes go in as soon as the API server
answers them, so the cache is never behind what the operator itself did; a watch event
that is behind costs a precondition failure on a delete (uid, resourceVersion), never a
wrong delete.

Secrets are not here on purpose: the operator writes and deletes its delivery Secrets by
name and never reads or lists a Secret.

Only the fields decisions need are kept (metadata, roleRef, subjects, rules, status of
requests): at ten thousand grants the bodies would be most of the operator's memory.
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core import lifecycle
from zsp_operator.core.models import AccessRequestStatus
from zsp_operator.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    Resource,
)

Body = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)

_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp")
# What each cached kind needs beyond its metadata.
_KEPT_FIELDS: dict[str, tuple[str, ...]] = {
    ROLE_BINDINGS.kind: ("roleRef", "subjects"),
    CLUSTER_ROLE_BINDINGS.kind: ("roleRef", "subjects"),
    ROLES.kind: ("rules",),
    CLUSTER_ROLES.kind: ("rules",),
    SERVICE_ACCOUNTS.kind: (),
}
_INTERNED_UP_TO = 256  # characters: names, kinds, verbs, uids; not long text
CACHED = (ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS, ROLES, CLUSTER_ROLES, SERVICE_ACCOUNTS)
# The kinds the operator creates for a grant and finds again by label, in teardown order.
OWNED = (ROLE_BINDINGS, SERVICE_ACCOUNTS, ROLES)


def interned(value: Any) -> Any:
    """A JSON value with its strings interned (dicts and lists copied): for what is kept long.

    Each watch event is parsed on its own, so the same keys ("apiGroup", "namespace") and values
    (namespaces, kinds, verbs, label keys) are new strings in every cached object; interned,
    equal strings are one object however many objects hold them.
    """
    kind = type(value)
    if kind is str:
        return sys.intern(value) if len(value) <= _INTERNED_UP_TO else value
    if kind is dict:
        return {interned(k): interned(v) for k, v in value.items()}
    if kind is list:
        return [interned(item) for item in value]
    return value


def slim(res: Resource, body: Mapping[str, Any]) -> Body:
    """The part of an object the operator decides on, with its kind filled in."""
    meta = body.get("metadata") or {}
    kept: Body = {
        "apiVersion": res.api_version,
        "kind": res.kind,
        "metadata": {k: interned(meta[k]) for k in _KEPT_METADATA if meta.get(k) is not None},
    }
    for name in _KEPT_FIELDS[res.kind]:
        if body.get(name) is not None:
            kept[name] = interned(body[name])
    return kept


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def _role_of(res: Resource, body: Mapping[str, Any]) -> Key | None:
    if res is not ROLE_BINDINGS:
        return None
    ref = body.get("roleRef") or {}
    return (key_of(body)[0], ref.get("name") or "") if ref.get("kind") == "Role" else None


def grant_uid_of(body: Mapping[str, Any]) -> str | None:
    labels = (body.get("metadata") or {}).get("labels") or {}
    if labels.get(c.LABEL_MANAGED_BY) != c.OPERATOR_NAME:
        return None
    return labels.get(c.LABEL_GRANT_UID) or None


class ObjectCache:
    """Objects by kind and (namespace, name), with the managed ones indexed by grant uid."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[Key, Body]] = {res.kind: {} for res in CACHED}
        self._by_grant: dict[str, set[tuple[str, Key]]] = defaultdict(set)
        self._by_namespace: dict[str, dict[str, set[Key]]] = {res.kind: defaultdict(set) for res in CACHED}
        # RoleBindings by the Role they name: a Role's change is judged against its bindings only.
        self._by_role: dict[Key, set[Key]] = defaultdict(set)

    def put(self, res: Resource, body: Mapping[str, Any]) -> Body:
        """Store (or replace) one object as the API server last described it."""
        kept = slim(res, body)
        key = key_of(kept)
        self._unindex(res, key)
        if res is SERVICE_ACCOUNTS and grant_uid_of(kept) is None:
            return kept  # only the ServiceAccounts the operator minted are ours to remember
        self._objects[res.kind][key] = kept
        self._by_namespace[res.kind][key[0]].add(key)
        owner = grant_uid_of(kept)
        if owner is not None:
            self._by_grant[owner].add((res.kind, key))
        role = _role_of(res, kept)
        if role is not None:
            self._by_role[role].add(key)
        return kept

    def drop(self, res: Resource, namespace: str | None, name: str, uid: str | None = None) -> None:
        """Forget an object; with `uid`, only if the cached one is that object."""
        key = (namespace or "", name)
        current = self._objects[res.kind].get(key)
        if current is None or (uid and current["metadata"].get("uid") != uid):
            return
        self._unindex(res, key)

    def _unindex(self, res: Resource, key: Key) -> None:
        old = self._objects[res.kind].pop(key, None)
        if old is None:
            return
        in_namespace = self._by_namespace[res.kind].get(key[0])
        if in_namespace is not None:
            in_namespace.discard(key)
            if not in_namespace:
                del self._by_namespace[res.kind][key[0]]
        role = _role_of(res, old)
        if role is not None and role in self._by_role:
            self._by_role[role].discard(key)
            if not self._by_role[role]:
                del self._by_role[role]
        owner = grant_uid_of(old)
        if owner is not None:
            owned = self._by_grant.get(owner)
            if owned is not None:
                owned.discard((res.kind, key))
                if not owned:
                    del self._by_grant[owner]

    def event(self, res: Resource, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Apply one watch event (None: an object of the initial listing)."""
        if event_type == "DELETED":
            meta = body.get("metadata") or {}
            self.drop(res, meta.get("namespace"), meta.get("name") or "", meta.get("uid"))
        else:
            self.put(res, body)

    def replace(self, res: Resource, bodies: Iterable[Mapping[str, Any]]) -> None:
        """Start over for one kind from a full listing."""
        for key in list(self._objects[res.kind]):
            self._unindex(res, key)
        for body in bodies:
            self.put(res, body)

    # -- reads -------------------------------------------------------------------------------

    def get(self, res: Resource, namespace: str | None, name: str) -> Body | None:
        return self._objects[res.kind].get((namespace or "", name))

    def all(self, res: Resource) -> Iterator[Body]:
        return iter(list(self._objects[res.kind].values()))

    def in_namespace(self, res: Resource, namespace: str) -> list[Body]:
        objects = self._objects[res.kind]
        return [objects[key] for key in self._by_namespace[res.kind].get(namespace, ()) if key in objects]

    def bound_to_role(self, namespace: str, role: str) -> list[Body]:
        """The cached RoleBindings of a namespace that name this Role."""
        objects = self._objects[ROLE_BINDINGS.kind]
        return [objects[key] for key in self._by_role.get((namespace, role), ()) if key in objects]

    def of_grant(self, res: Resource, grant_uid: str) -> list[Body]:
        """What the cache holds with this grant's uid label, of one kind."""
        objects = self._objects[res.kind]
        return [
            objects[key]
            for kind, key in self._by_grant.get(grant_uid, ())
            if kind == res.kind and key in objects
        ]

    def grant_uids(self) -> set[str]:
        """Every grant uid some cached object is labelled with."""
        return set(self._by_grant)

    def __len__(self) -> int:
        return sum(len(objects) for objects in self._objects.values())


def not_older(new: str | None, old: str | None) -> bool:
    """Whether resourceVersion `new` is not older than `old` (equal is not older).

    Compared as numbers when both are (etcd's are), else assumed newer: a watch event that
    trails the operator's own write must not bring back what that write replaced.
    """
    new, old = new or "", old or ""
    if new.isdigit() and old.isdigit():
        return int(new) >= int(old)
    return True


class RequestCache:
    """The newest body seen of each AccessRequest still in flight (not yet terminal).

    Terminal requests are forgotten: they are never written again but for an edit's
    acknowledgement, and there are as many of them as there ever were requests. Only their
    uids are remembered (a bounded number), so a watch event that trails the terminal write
    cannot bring a request back to life.

    Each body is kept as compact JSON text (about a third of the memory of the parsed dict,
    which is 70 objects) and parsed again when asked for: every `get` returns a fresh dict,
    so a caller that changes it changes nothing here.
    """

    def __init__(self, remembered: int = 100_000) -> None:
        # key -> (uid, resourceVersion, the body as JSON)
        self._bodies: dict[Key, tuple[str, str | None, str]] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._remembered = remembered

    def put(self, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        current = self._bodies.get(key)
        uid = str(body["metadata"].get("uid") or "")
        version = body["metadata"].get("resourceVersion")
        if current is not None and current[0] == uid and not not_older(version, current[1]):
            return
        if is_terminal_body(body):
            self._bodies.pop(key, None)
            self._ended[uid] = None
            while len(self._ended) > self._remembered:
                self._ended.popitem(last=False)
        elif uid not in self._ended:
            # managedFields is most of a body and nothing here reads it
            meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
            text = json.dumps({**body, "metadata": meta}, separators=(",", ":"), default=str)
            self._bodies[key] = (uid, version, text)

    def ended(self, uid: str) -> bool:
        """Whether this request was seen terminal (its later events are stale)."""
        return uid in self._ended

    def drop(self, namespace: str, name: str) -> None:
        self._bodies.pop((namespace, name), None)

    def get(self, namespace: str, name: str, uid: str | None = None) -> Body | None:
        kept = self._bodies.get((namespace, name))
        if kept is None or (uid and kept[0] != uid):
            return None
        body: Body = json.loads(kept[2])
        return body

    def replace(self, bodies: Iterable[Mapping[str, Any]]) -> None:
        self._bodies.clear()
        for body in bodies:
            self.put(body)

    def __len__(self) -> int:
        return len(self._bodies)


def is_terminal_body(body: Mapping[str, Any]) -> bool:
    try:
        status = AccessRequestStatus.model_validate(body.get("status") or {})
    except ValueError:
        return False  # malformed: the controller reports it, the cache keeps it meanwhile
    return lifecycle.is_terminal(status)
