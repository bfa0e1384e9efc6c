"""Admission webhooks: identities and approvals from the API server's userInfo, and the
checks the CRD schema cannot express. Decisions live in core.admission; this only wires.

The handlers are coroutines that only read, answered on the admission loop of their own
(`admission_loop.py`): no thread hop to an executor, no wait behind the engine.
"""

from __future__ import annotations

from typing import Any

import kopf

from zsp_operator.core import admission
from zsp_operator.handlers.common import GRANTS, POLICIES, REQUESTS, controller_of

# The garbage collector may rewrite ownerReferences of TaskGrants; nobody else but us.
_GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"


def _reject(verdict: admission.Admission) -> None:
    if verdict.errors:
        raise kopf.AdmissionError("; ".join(verdict.errors), code=400)


def _apply(verdict: admission.Admission, patch: kopf.Patch) -> None:
    for key, value in verdict.annotations.items():
        patch.setdefault("metadata", {}).setdefault("annotations", {})[key] = value


def _old(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The object before an UPDATE (kopf passes it as `old`)."""
    old = kwargs.get("old")
    return dict(old) if old is not None else None


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.mutate(*REQUESTS, id="identity", operations=["CREATE", "UPDATE"], registry=registry)
    async def record_identity(
        body: kopf.Body, userinfo: kopf.UserInfo, patch: kopf.Patch, memo: Any, **kwargs: Any
    ) -> None:
        controller = controller_of(memo)
        old, operation = _old(kwargs), str(kwargs.get("operation") or "")
        user = admission.userinfo(dict(userinfo))
        verdict = admission.admit_request_identity(operation, old, dict(body), user)
        _reject(verdict)
        if operation == "UPDATE" and old:
            policy = controller.view.policies.get((old.get("status") or {}).get("policy") or "")
            approval = admission.admit_approval(old, dict(body), user, controller.clock(), policy)
            _reject(approval)
            verdict.annotations.update(approval.annotations)
        _apply(verdict, patch)

    @kopf.on.validate(*REQUESTS, id="request-spec", operations=["CREATE", "UPDATE"], registry=registry)
    async def validate_request(body: kopf.Body, userinfo: kopf.UserInfo, memo: Any, **kwargs: Any) -> None:
        controller = controller_of(memo)
        if userinfo.get("username") == controller.identity:
            return  # the operator writes status and bookkeeping, never the spec
        old, operation = _old(kwargs), str(kwargs.get("operation") or "")
        verdict = admission.admit_request_spec(
            operation, old, dict(body), controller.view.policies, controller.settings.catalog
        )
        _reject(verdict)

    @kopf.on.validate(*GRANTS, id="operator-only", operations=["CREATE", "UPDATE"], registry=registry)
    async def grants_are_ours(userinfo: kopf.UserInfo, memo: Any, **_: Any) -> None:
        username = userinfo.get("username")
        if username not in (controller_of(memo).identity, _GARBAGE_COLLECTOR):
            raise kopf.AdmissionError(
                f"TaskGrants are written only by the operator, not by {username}; file an AccessRequest instead",
                code=403,
            )

    @kopf.on.validate(*POLICIES, id="policy", operations=["CREATE", "UPDATE"], registry=registry)
    async def validate_policy(body: kopf.Body, memo: Any, **_: Any) -> None:
        _reject(admission.admit_policy(dict(body), controller_of(memo).settings.catalog))
