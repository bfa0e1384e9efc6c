"""What policy limits count, kept up to date grant by grant, so a decision never scans every grant.

A `GrantIndex` holds TaskGrants by key (the operator uses the grant's uid) and keeps, for the
grants that can count against limits (not being deleted, not revoked):

- per grantee identity `(namespace, name)`: the grants themselves, in the order they were first
  put, for `activePerGrantee` and `exclusiveEnvironments`;
- per requester username and per policy name: their expiry times, sorted, for
  `activePerRequester` and `activePerPolicy`.

Whether a grant is live also depends on the moment of the decision and on the request being
decided: a grant that has expired (`expiresAt <= now`) but is not revoked yet, or the request's
own grant, does not count. The index answers for a given `now` and request uid without looking at
any grant but the grantee's and the request's own: expired grants are a prefix of each sorted
expiry list, found by bisection.

Pure data: no I/O, no clock. Queries cost O(log n) plus the grants of the one grantee or request
asked about; `put` and `drop` cost O(log n) plus a list insertion.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from itertools import count
from types import MappingProxyType
from typing import Any

from zsp_operator.core.models import TaskGrant

Identity = tuple[str, str]


def counts_against_limits(grant: TaskGrant) -> bool:
    """Neither being deleted nor revoked; whether it has expired depends on when one asks."""
    return grant.metadata.deletion_timestamp is None and grant.status.revoked_at is None


def identity_of(grant: TaskGrant) -> Identity | None:
    """The ServiceAccount `(namespace, name)` that holds the grant's privilege."""
    identity = grant.spec.identity
    return None if identity is None else (identity.namespace, identity.name)


def _requester(grant: TaskGrant) -> str | None:
    requester = grant.spec.requester
    return None if requester is None else requester.username


def _live_at(grant: TaskGrant, now: datetime) -> bool:
    return grant.spec.expires_at > now


class GrantIndex:
    """Grants by key, with what limits count kept current as grants are put and dropped."""

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._grants: dict[str, TaskGrant] = {}
        self._order: dict[str, int] = {}  # when each key was first put: the order grants are listed in
        self._next = count()
        self._by_identity: dict[Identity, dict[str, TaskGrant]] = {}
        self._by_request: dict[str, dict[str, TaskGrant]] = {}
        self._expiries_by_requester: dict[str, list[datetime]] = {}
        self._expiries_by_policy: dict[str, list[datetime]] = {}

    @classmethod
    def of(cls, grants: Iterable[TaskGrant]) -> GrantIndex:
        """An index of these grants, each kept on its own (keyed by position, not by uid)."""
        index = cls()
        for position, grant in enumerate(grants):
            index.put(str(position), grant)
        return index

    # -- keeping it current ----------------------------------------------------------------

    def put(self, key: str, grant: TaskGrant) -> None:
        """Add a grant, or replace the one under this key (which keeps its place in the order)."""
        previous = self._grants.get(key)
        if previous is not None:
            self._forget(key, previous)
        else:
            self._order[key] = next(self._next)
        self._grants[key] = grant
        if counts_against_limits(grant):
            self._count(key, grant)

    def drop(self, key: str) -> TaskGrant | None:
        grant = self._grants.pop(key, None)
        if grant is not None:
            self._forget(key, grant)
            del self._order[key]
        return grant

    def _count(self, key: str, grant: TaskGrant) -> None:
        identity = identity_of(grant)
        if identity is not None:
            held = self._by_identity.setdefault(identity, {})
            last = next(reversed(held.keys()), None)
            held[key] = grant
            if last is not None and self._order[last] > self._order[key]:
                # Counted again after a while (say, put back without its deletionTimestamp):
                # keep the order the grants were first put in.
                ordered = sorted(held.items(), key=lambda item: self._order[item[0]])
                held.clear()
                held.update(ordered)
        self._by_request.setdefault(grant.spec.request.uid, {})[key] = grant
        requester = _requester(grant)
        if requester is not None:
            insort(self._expiries_by_requester.setdefault(requester, []), grant.spec.expires_at)
        insort(self._expiries_by_policy.setdefault(grant.spec.policy, []), grant.spec.expires_at)

    def _forget(self, key: str, grant: TaskGrant) -> None:
        if not counts_against_limits(grant):
            return
        identity = identity_of(grant)
        if identity is not None:
            _discard(self._by_identity, identity, key)
        _discard(self._by_request, grant.spec.request.uid, key)
        requester = _requester(grant)
        if requester is not None:
            _remove_expiry(self._expiries_by_requester, requester, grant.spec.expires_at)
        _remove_expiry(self._expiries_by_policy, grant.spec.policy, grant.spec.expires_at)

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._grants)

    def __iter__(self) -> Iterator[TaskGrant]:
        """Every grant put, in the order first put, whether or not it counts."""
        return iter(self._grants.values())

    def get(self, key: str) -> TaskGrant | None:
        return self._grants.get(key)

    @property
    def by_key(self) -> Mapping[str, TaskGrant]:
        """Every grant put, by key, in the order first put; read-only."""
        return MappingProxyType(self._grants)

    def holding(self, identity: Identity) -> list[TaskGrant]:
        """Every counted grant (not being deleted, not revoked) this identity holds, expired or not."""
        return list((self._by_identity.get(identity) or {}).values())

    def held_by(self, identity: Identity, now: datetime, request_uid: str = "") -> list[TaskGrant]:
        """Live grants of this identity at `now`, in the order first put, but the request's own."""
        held = self._by_identity.get(identity)
        if not held:
            return []
        return [
            g
            for g in held.values()
            if _live_at(g, now) and not (request_uid and g.spec.request.uid == request_uid)
        ]

    def count_by_requester(self, username: str, now: datetime, request_uid: str = "") -> int:
        """Live grants at `now` filed by this requester, not counting the request's own."""
        live = _live_count(self._expiries_by_requester.get(username), now)
        own = self._own(request_uid, now)
        return live - sum(1 for g in own if _requester(g) == username) if own else live

    def count_by_policy(self, policy: str, now: datetime, request_uid: str = "") -> int:
        """Live grants at `now` issued under this policy, not counting the request's own."""
        live = _live_count(self._expiries_by_policy.get(policy), now)
        own = self._own(request_uid, now)
        return live - sum(1 for g in own if g.spec.policy == policy) if own else live

    def _own(self, request_uid: str, now: datetime) -> list[TaskGrant]:
        """The request's own grants that the counts above include at `now`."""
        if not request_uid:
            return []
        own = self._by_request.get(request_uid)
        return [g for g in own.values() if _live_at(g, now)] if own else []

    # -- comparing ---------------------------------------------------------------------------

    def _state(self) -> tuple[Any, ...]:
        """Everything the index holds, in a form that does not depend on how it was built."""
        ordered = sorted(self._grants, key=self._order.__getitem__)
        return (
            [(key, self._grants[key]) for key in ordered],
            {identity: list(held) for identity, held in self._by_identity.items()},
            {uid: sorted(own) for uid, own in self._by_request.items()},
            self._expiries_by_requester,
            self._expiries_by_policy,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GrantIndex):
            return NotImplemented
        return self._state() == other._state()

    def __repr__(self) -> str:
        counted = sum(1 for g in self._grants.values() if counts_against_limits(g))
        return f"GrantIndex({len(self._grants)} grants, {counted} counting against limits)"


def _discard(groups: dict[Any, dict[str, TaskGrant]], group: Any, key: str) -> None:
    members = groups.get(group)
    if members is not None:
        members.pop(key, None)
        if not members:
            del groups[group]


def _remove_expiry(groups: dict[str, list[datetime]], group: str, expires_at: datetime) -> None:
    expiries = groups[group]
    del expiries[bisect_left(expiries, expires_at)]
    if not expiries:
        del groups[group]


def _live_count(expiries: list[datetime] | None, now: datetime) -> int:
    """How many of these sorted expiry times are after `now`."""
    return 0 if not expiries else len(expiries) - bisect_right(expiries, now)
