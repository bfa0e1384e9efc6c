"""Pure builders of every object issuance creates; the grants service only sends them.

Names are derived from the request (name and uid), so a retried or resumed issuance
finds the objects it already made instead of minting duplicates.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from zsp_operator.core import constants as c
from zsp_operator.core.models import (
    AccessRequest,
    NamespacedName,
    PolicyRule,
    TaskGrant,
    TaskGrantSpec,
)

Body = dict[str, Any]
RBAC_API = "rbac.authorization.k8s.io/v1"
_MAX_NAME = 63


def _short(text: str, budget: int) -> str:
    return text[:budget].rstrip("-.")


def object_name(request: AccessRequest) -> str:
    """`zsp-<request>-<hash>`: unique per request, stable across retries, a valid DNS label."""
    digest = hashlib.sha256(request.metadata.uid.encode()).hexdigest()[:6]
    return f"zsp-{_short(request.name, _MAX_NAME - 11)}-{digest}"


def grant_labels(grant: TaskGrant) -> dict[str, str]:
    return {
        c.LABEL_MANAGED_BY: c.OPERATOR_NAME,
        c.LABEL_GRANT: grant.name,
        c.LABEL_GRANT_UID: grant.metadata.uid,
        c.LABEL_REQUEST_UID: grant.spec.request.uid,
    }


def grant_selector(grant_uid: str) -> str:
    """Label selector of everything issued for one grant."""
    return f"{c.LABEL_MANAGED_BY}={c.OPERATOR_NAME},{c.LABEL_GRANT_UID}={grant_uid}"


MANAGED_SELECTOR = f"{c.LABEL_MANAGED_BY}={c.OPERATOR_NAME}"


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> Body:
    # controller: true lets the garbage collector remove children if the owner vanishes.
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}


def _child_meta(grant: TaskGrant, name: str, namespace: str, owned: bool = True) -> Body:
    meta: Body = {"name": name, "namespace": namespace, "labels": grant_labels(grant)}
    if owned:
        meta["ownerReferences"] = [
            owner_reference(c.API_VERSION, c.KIND_GRANT, grant.name, grant.metadata.uid)
        ]
    return meta


def task_grant(request: AccessRequest, spec: TaskGrantSpec) -> Body:
    """The TaskGrant: in the request's namespace, owned by the request, with the teardown finalizer."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_GRANT,
        "metadata": {
            "name": request.name,
            "namespace": request.namespace,
            "labels": {
                c.LABEL_MANAGED_BY: c.OPERATOR_NAME,
                c.LABEL_REQUEST_UID: request.metadata.uid,
            },
            "finalizers": [c.FINALIZER],
            "ownerReferences": [
                owner_reference(c.API_VERSION, c.KIND_REQUEST, request.name, request.metadata.uid)
            ],
        },
        "spec": spec.to_wire(),
    }


def service_account(grant: TaskGrant, identity: NamespacedName) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _child_meta(grant, identity.name, identity.namespace),
        # Tokens come only from the TokenRequest API; nothing is mounted or stored.
        "automountServiceAccountToken": False,
    }


def role(grant: TaskGrant, name: str, rules: Sequence[PolicyRule]) -> Body:
    return {
        "apiVersion": RBAC_API,
        "kind": "Role",
        "metadata": _child_meta(grant, name, grant.namespace),
        "rules": [rule.to_wire() for rule in rules],
    }


def role_binding(grant: TaskGrant, name: str, role_ref: Body, subject: NamespacedName) -> Body:
    return {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": _child_meta(grant, name, grant.namespace),
        "roleRef": role_ref,
        "subjects": [{"kind": "ServiceAccount", "name": subject.name, "namespace": subject.namespace}],
    }


def role_ref(kind: str, name: str) -> Body:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}


def token_request(expiration_seconds: int) -> Body:
    # 3607 s is the one value some API servers silently extend to a year: never ask for it.
    seconds = max(c.TOKEN_MIN_SECONDS, expiration_seconds)
    if seconds == 3607:
        seconds = 3600
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds},
    }


def kubeconfig(server: str, ca_data: str | None, token: str, namespace: str, user: str) -> str:
    """A ready-to-use kubeconfig for one identity, as YAML."""
    cluster: Body = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(ca_data.encode()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "zsp", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "zsp", "context": {"cluster": "zsp", "user": user, "namespace": namespace}}],
        "current-context": "zsp",
    }
    return yaml.safe_dump(config, sort_keys=False)


def delivery_secret(grant: TaskGrant, namespace: str, name: str, config: str, expires: datetime) -> Body:
    # Another namespace than the grant: no ownerReference can point there; teardown deletes it.
    meta = _child_meta(grant, name, namespace, owned=False)
    meta["annotations"] = {"zsp.dev/expires-at": expires.isoformat()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta,
        "stringData": {c.DELIVERY_KEY: config},
    }


def credential_id(token: str) -> str | None:
    """The `jti` of a service-account JWT: what the API server's audit log calls credential-id.

    The token is not verified here; it came straight from the TokenRequest API.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    jti = claims.get("jti") if isinstance(claims, dict) else None
    return str(jti) if jti else None
