"""Acting as an identity: mint its token, and ask the API server what it may do.

Used wherever the product proves a grant works (the demo) and by the test stories: an
authorisation answer always comes from the API server, asked *with the identity's own
token*, never from reading RBAC objects.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.kube.client import Kube
from zsp_operator.kube.errors import KubeError, Unauthorized
from zsp_operator.kube.resources import ACCESS_REQUESTS, SELF_SUBJECT_ACCESS_REVIEWS, SERVICE_ACCOUNTS
from zsp_operator.kube.retry import pause

# Webhooks starting up are not trouble to back off from: they are noticed within this long.
_LOOK_AT_LEAST_EVERY = 0.2


async def request_token(kube: Kube, namespace: str, name: str, seconds: int = c.TOKEN_MIN_SECONDS) -> str:
    """A fresh TokenRequest token for an existing ServiceAccount."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": max(seconds, c.TOKEN_MIN_SECONDS)},
    }
    result = await kube.post(SERVICE_ACCOUNTS, name, "token", body, namespace)
    token: str = result["status"]["token"]
    return token


async def may(kube: Kube, verb: str, resource: str, namespace: str, group: str = "") -> bool | None:
    """SelfSubjectAccessReview as the client's own identity.

    Returns None when the identity no longer authenticates at all (its token is dead).
    """
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": namespace}
        },
    }
    try:
        result = await kube.create(SELF_SUBJECT_ACCESS_REVIEWS, review)
    except Unauthorized:
        return None
    return bool(result["status"].get("allowed"))


async def may_as(
    kubeconfig: dict[str, Any], verb: str, resource: str, namespace: str, group: str = ""
) -> bool | None:
    async with await Kube.from_dict(kubeconfig) as as_identity:
        return await may(as_identity, verb, resource, namespace, group)


async def wait_for_webhooks(admin: Kube, within: float = 30.0, namespace: str = "default") -> None:
    """Return once the admission webhooks answer: a dry-run AccessRequest comes back stamped."""
    probe = {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_REQUEST,
        "metadata": {"name": f"probe-{uuid.uuid4().hex[:6]}", "namespace": namespace},
        "spec": {"grantee": {"ephemeral": {}}, "permission": "probe", "reason": "readiness probe"},
    }
    deadline = time.monotonic() + within
    last: Exception | None = None
    attempt = 0
    while time.monotonic() < deadline:
        try:
            created = await admin.create(ACCESS_REQUESTS, probe, dry_run=True)
            if c.ANNOTATION_REQUESTER in (created["metadata"].get("annotations") or {}):
                return
        except KubeError as err:
            last = err
        await pause(attempt, cap=_LOOK_AT_LEAST_EVERY)
        attempt += 1
    raise TimeoutError(f"admission webhooks not answering after {within:.0f}s: {last}")
