"""Authentication: static bearer tokens (like --token-auth-file) and ServiceAccount JWTs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from zsp_operator.sim.store import Store
from zsp_operator.sim.tokens import API_AUDIENCE, TokenSigner

AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)

    def to_wire(self) -> dict[str, Any]:
        """The `userInfo` shape of AdmissionReview, TokenReview and SelfSubjectReview."""
        wire: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            wire["uid"] = self.uid
        if self.extra:
            wire["extra"] = {key: list(values) for key, values in self.extra.items()}
        return wire

    @property
    def is_superuser(self) -> bool:
        return MASTERS in self.groups


def with_authenticated(groups: Iterable[str]) -> tuple[str, ...]:
    listed = [group for group in groups if group != AUTHENTICATED]
    return (*listed, AUTHENTICATED)


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


class Authenticator:
    def __init__(self, store: Store, signer: TokenSigner, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._static: dict[str, UserInfo] = {}

    def add_static(self, username: str, groups: Iterable[str] = (), uid: str = "") -> str:
        """Register a new static token for this identity and return it."""
        token = secrets.token_urlsafe(32)
        self._static[token] = UserInfo(username, uid, with_authenticated(groups))
        return token

    def authenticate(self, token: str, audiences: Iterable[str] | None = None) -> UserInfo | None:
        """Who presents this token, or None if it is unknown, expired or its identity is gone."""
        if not token:
            return None
        static = self._static.get(token)
        if static is not None:
            return static
        claims = self._signer.verify(token, self._clock())
        if claims is None:
            return None
        wanted = set(audiences or [API_AUDIENCE])
        if not wanted.intersection(claims.get("aud") or []):
            return None
        return self._service_account_user(claims)

    def _service_account_user(self, claims: dict[str, Any]) -> UserInfo | None:
        kube = claims.get("kubernetes.io") or {}
        namespace = kube.get("namespace", "")
        account = kube.get("serviceaccount") or {}
        stored = self._store.get(("", "serviceaccounts"), namespace, account.get("name", ""))
        # A token dies with its ServiceAccount, even if one of the same name is recreated.
        if stored is None or stored["metadata"].get("uid") != account.get("uid"):
            return None
        extra = {CREDENTIAL_ID: [f"JTI={claims['jti']}"]}
        for kind, plural in (("pod", "pods"), ("secret", "secrets")):
            bound = kube.get(kind)
            if not bound:
                continue
            live = self._store.get(("", plural), namespace, bound.get("name", ""))
            if live is None or live["metadata"].get("uid") != bound.get("uid"):
                return None
            if kind == "pod":
                extra["authentication.kubernetes.io/pod-name"] = [bound["name"]]
                extra["authentication.kubernetes.io/pod-uid"] = [bound["uid"]]
        return UserInfo(
            service_account_username(namespace, account["name"]),
            account["uid"],
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
            extra,
        )
