"""The operator's in-memory view of what decisions depend on: policies, namespaces, grants.

Primed by one list per kind at start, then kept current by watch events (kopf handlers)
and by the operator's own writes, so a decision never waits on the API server and never
misses a grant it has just issued.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from zsp_operator.core.errors import describe
from zsp_operator.core.grantindex import GrantIndex
from zsp_operator.core.models import AccessPolicy, TaskGrant
from zsp_operator.engine.cache import not_older
from zsp_operator.engine.memory import GrantCountWatch

log = logging.getLogger(__name__)


# One set object per distinct combination of fields given (see `compact`).
_FIELD_SETS: dict[frozenset[str], set[str]] = {}
_INTERNED_UP_TO = 256  # characters: names, kinds, verbs, reasons, uids; not long messages


def compact(value: Any) -> Any:
    """The same grant, in less memory: for the view, which holds every live grant for its life.

    Ten thousand grants parsed from JSON repeat the same strings (namespaces, kinds, verbs,
    the policy, the requester and its groups, condition reasons) ten thousand times: each one
    is interned here, so equal strings are one object. And pydantic keeps, in every model
    instance, the set of fields given when it was made (a set of 200 bytes or more, eleven per
    grant, nearly half a grant's memory): equal ones are shared. That set only matters to
    `exclude_unset` and `model_fields_set`, which the operator never uses on grants; it is
    not part of equality. Models are changed in place, lists too; dicts are rebuilt.
    """
    if isinstance(value, BaseModel):
        given = value.__pydantic_fields_set__
        key = frozenset(given)
        shared = _FIELD_SETS.get(key)
        if shared is None:
            shared = _FIELD_SETS[key] = set(key)
        object.__setattr__(value, "__pydantic_fields_set__", shared)
        attributes = value.__dict__
        for name, item in attributes.items():
            attributes[name] = compact(item)
        return value
    kind = type(value)
    if kind is str:
        return sys.intern(value) if len(value) <= _INTERNED_UP_TO else value
    if kind is list:
        for i, item in enumerate(value):
            value[i] = compact(item)
        return value
    if kind is dict:
        return {compact(k): compact(v) for k, v in value.items()}
    return value


@dataclass
class ClusterView:
    policies: dict[str, AccessPolicy] = field(default_factory=dict)
    invalid_policies: dict[str, list[str]] = field(default_factory=dict)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    # The grants by uid, with what policy limits count kept current as they come and go.
    grant_index: GrantIndex = field(default_factory=GrantIndex)
    # request uid -> grant uid: which request a grant was issued for, without a scan.
    _grant_of_request: dict[str, str] = field(default_factory=dict)
    # Returns memory to the system once many grants have ended (engine/memory.py).
    memory: GrantCountWatch = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.memory = GrantCountWatch(lambda: len(self.grant_index))

    @property
    def grants(self) -> Mapping[str, TaskGrant]:
        """Every grant seen, by uid; read-only: change it with put_grant and drop_grant."""
        return self.grant_index.by_key

    def put_policy(self, body: dict[str, Any]) -> AccessPolicy | None:
        """Store a policy; an invalid one is remembered with its errors and allows nothing."""
        name = body.get("metadata", {}).get("name", "")
        try:
            policy = AccessPolicy.model_validate(body)
        except ValidationError as err:
            self.policies.pop(name, None)
            self.invalid_policies[name] = describe(err, f"AccessPolicy {name}")
            log.warning("ignoring invalid policy: %s", "; ".join(self.invalid_policies[name]))
            return None
        self.invalid_policies.pop(name, None)
        self.policies[name] = policy
        return policy

    def drop_policy(self, name: str) -> None:
        self.policies.pop(name, None)
        self.invalid_policies.pop(name, None)

    def put_namespace(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        self.namespace_labels[meta.get("name", "")] = dict(meta.get("labels") or {})

    def drop_namespace(self, name: str) -> None:
        self.namespace_labels.pop(name, None)

    def put_grant(self, body: dict[str, Any] | TaskGrant) -> TaskGrant | None:
        try:
            grant = body if isinstance(body, TaskGrant) else TaskGrant.model_validate(body)
        except ValidationError as err:
            log.error("unreadable TaskGrant: %s", "; ".join(describe(err, "TaskGrant")))
            return None
        current = self.grant_index.get(grant.metadata.uid)
        newer = current is None or not_older(
            grant.metadata.resource_version, current.metadata.resource_version
        )
        if current is not None and not newer:
            return current  # a watch event that trails the operator's own write of this grant
        compact(grant)
        self.grant_index.put(grant.metadata.uid, grant)
        self._grant_of_request[grant.spec.request.uid] = grant.metadata.uid
        if current is None:
            self.memory.grew()
        return grant

    def drop_grant(self, uid: str) -> TaskGrant | None:
        dropped = self.grant_index.drop(uid)
        if dropped is not None and self._grant_of_request.get(dropped.spec.request.uid) == uid:
            del self._grant_of_request[dropped.spec.request.uid]
        if dropped is not None:
            self.memory.changed()
        return dropped

    def grant_for_request(self, request_uid: str) -> TaskGrant | None:
        uid = self._grant_of_request.get(request_uid)
        return self.grant_index.get(uid) if uid is not None else None

    def live_grants(self) -> list[TaskGrant]:
        """Grants not being deleted: what limits and exclusivity count."""
        return [g for g in self.grants.values() if g.metadata.deletion_timestamp is None]

    def grants_where(self, predicate: Callable[[TaskGrant], bool]) -> list[TaskGrant]:
        return [g for g in self.live_grants() if predicate(g)]

    def replace_all(
        self,
        policies: Iterable[dict[str, Any]],
        namespaces: Iterable[dict[str, Any]],
        grants: Iterable[dict[str, Any]],
    ) -> None:
        self.policies.clear()
        self.invalid_policies.clear()
        self.namespace_labels.clear()
        self.grant_index.clear()
        self._grant_of_request.clear()
        for body in policies:
            self.put_policy(body)
        for body in namespaces:
            self.put_namespace(body)
        for body in grants:
            self.put_grant(body)
