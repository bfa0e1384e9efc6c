"""Issue a grant all-or-nothing; tear it down in DESIGN order.

Issuance creates the TaskGrant first (so a crash leaves a record to clean up from), then
the objects that carry the privilege, each labelled with the grant's uid and owned by it.
Any failure removes everything made so far. Teardown deletes by the grant's record *and*
by label, RoleBinding first: authorisation stops within milliseconds of that delete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from zsp_operator.config import Settings
from zsp_operator.core import constants as c
from zsp_operator.core import manifests
from zsp_operator.core.lifecycle import set_condition
from zsp_operator.core.models import (
    AccessRequest,
    CreatedObject,
    NamespacedName,
    ObjectRef,
    TaskGrant,
    TaskGrantSpec,
    format_time,
    parse_time,
)
from zsp_operator.core.policy import Decision
from zsp_operator.kube import AlreadyExists, Kube, KubeError
from zsp_operator.kube.resources import (
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
    Resource,
)

log = logging.getLogger(__name__)

# Teardown order: the binding first (privilege gone), then the identity (its tokens stop
# authenticating), then the Role, then the delivered credentials.
TEARDOWN_ORDER = (ROLE_BINDINGS, SERVICE_ACCOUNTS, ROLES, SECRETS)


class IssueError(Exception):
    """Issuance failed at `step`; the caller rolls back what was made (`remove_everything`)."""

    def __init__(self, step: str, message: str, grant_uid: str | None = None) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.grant_uid = grant_uid


@dataclass(frozen=True)
class Issued:
    grant: TaskGrant
    objects: tuple[CreatedObject, ...]
    token_credential_id: str | None
    token_expires_at: datetime | None


def _created(res: Resource, body: dict[str, Any]) -> CreatedObject:
    meta = body["metadata"]
    return CreatedObject(
        api_version=res.api_version,
        kind=res.kind,
        name=meta["name"],
        namespace=meta.get("namespace"),
        uid=meta.get("uid", ""),
    )


class GrantService:
    def __init__(self, kube: Kube, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock

    # -- issuance ----------------------------------------------------------------------------

    def grant_spec(self, request: AccessRequest, decision: Decision, now: datetime) -> TaskGrantSpec:
        """What the TaskGrant records: the authority teardown and the sweeper trust."""
        spec = request.spec
        if spec.grantee.service_account is not None:
            identity = spec.grantee.service_account
        else:
            identity = NamespacedName(namespace=request.namespace, name=manifests.object_name(request))
        assert decision.ttl is not None, "only an allowed decision is issued"
        return TaskGrantSpec(
            request=ObjectRef(name=request.name, uid=request.metadata.uid),
            policy=decision.policy or "",
            mode=spec.grantee.mode,
            identity=identity,
            permission=decision.permission,
            rules=list(decision.rules),
            cluster_role=decision.cluster_role,
            requester=request.status.requester,
            expires_at=now + decision.ttl,
            task_ref=spec.task_ref,
            delivery=spec.delivery,
            persistence_capable=decision.persistence_capable,
            break_glass=decision.break_glass,
        )

    async def reserve(self, request: AccessRequest, decision: Decision) -> TaskGrant:
        """Create the TaskGrant alone: from here on, limits count it."""
        return await self._create_grant(request, decision)

    async def complete(self, request: AccessRequest, grant: TaskGrant) -> Issued:
        """Create what a reserved grant needs; on any failure raise IssueError naming the step.

        Nothing is rolled back here: the caller first marks the grant as never live, so the
        watch events of its own deletions cannot read as outside events, then rolls back.
        """
        objects: list[CreatedObject] = []
        step = "ServiceAccount"
        try:
            spec = grant.spec
            assert spec.identity is not None
            if spec.mode == "ephemeral":
                sa = await self._ensure(
                    SERVICE_ACCOUNTS, manifests.service_account(grant, spec.identity), grant
                )
                objects.append(_created(SERVICE_ACCOUNTS, sa))
            name = manifests.object_name(request)
            if spec.cluster_role:
                ref = manifests.role_ref("ClusterRole", spec.cluster_role)
            else:
                step = "Role"
                role = await self._ensure(ROLES, manifests.role(grant, name, spec.rules), grant)
                objects.append(_created(ROLES, role))
                ref = manifests.role_ref("Role", name)
            step = "RoleBinding"
            binding = await self._ensure(
                ROLE_BINDINGS, manifests.role_binding(grant, name, ref, spec.identity), grant
            )
            objects.append(_created(ROLE_BINDINGS, binding))
            token_id = token_expiry = None
            if spec.mode == "ephemeral":
                step = "TokenRequest"
                token, token_id, token_expiry = await self._request_token(spec.identity)
                step = "delivery Secret"
                secret = await self._deliver(grant, token)
                objects.append(_created(SECRETS, secret))
            step = "TaskGrant status"
            await self._record_issued(grant, objects, token_id, token_expiry)
        except (KubeError, IssueError, ValueError) as err:
            message = err.message if isinstance(err, KubeError | IssueError) else str(err)
            raise IssueError(step, f"creating the {step} failed: {message}", grant.metadata.uid) from err
        return Issued(grant, tuple(objects), token_id, token_expiry)

    async def _create_grant(self, request: AccessRequest, decision: Decision) -> TaskGrant:
        body = manifests.task_grant(request, self.grant_spec(request, decision, self.clock()))
        try:
            created = await self.kube.create(TASK_GRANTS, body)
        except AlreadyExists:
            # A resumed issuance: the grant from before the restart is ours if it names our request.
            existing = await self.kube.get(TASK_GRANTS, request.name, request.namespace)
            if existing is None or existing["spec"]["request"]["uid"] != request.metadata.uid:
                raise IssueError(
                    "TaskGrant", f"a TaskGrant named {request.name} belongs to another request"
                ) from None
            created = existing
        except KubeError as err:
            raise IssueError("TaskGrant", f"creating the TaskGrant failed: {err.message}") from err
        return TaskGrant.model_validate(created)

    async def _ensure(self, res: Resource, body: dict[str, Any], grant: TaskGrant) -> dict[str, Any]:
        """Create; an existing object is reused only if it carries this grant's uid."""
        try:
            return await self.kube.create(res, body)
        except AlreadyExists:
            meta = body["metadata"]
            existing = await self.kube.get(res, meta["name"], meta.get("namespace"))
            labels = (existing or {}).get("metadata", {}).get("labels") or {}
            if existing is None or labels.get(c.LABEL_GRANT_UID) != grant.metadata.uid:
                raise IssueError(
                    res.kind, f"{res.kind} {meta['name']} exists and is not this grant's"
                ) from None
            return existing

    async def _request_token(self, identity: NamespacedName) -> tuple[str, str | None, datetime | None]:
        body = manifests.token_request(self.settings.token_seconds)
        result = await self.kube.post(SERVICE_ACCOUNTS, identity.name, "token", body, identity.namespace)
        status = result.get("status") or {}
        token = status.get("token")
        if not token:
            raise IssueError("TokenRequest", "the API server returned no token")
        expiry_text = status.get("expirationTimestamp")
        expiry = parse_time(expiry_text)
        return token, manifests.credential_id(token), expiry

    async def _deliver(self, grant: TaskGrant, token: str) -> dict[str, Any]:
        delivery = grant.spec.delivery
        identity = grant.spec.identity
        assert delivery is not None
        assert identity is not None
        conn = self.kube.connection
        config = manifests.kubeconfig(
            self.settings.delivery_server or conn.server,
            conn.ca_data(),
            token,
            grant.namespace,
            f"{identity.namespace}/{identity.name}",
        )
        body = manifests.delivery_secret(
            grant, delivery.namespace, delivery.secret_name, config, grant.spec.expires_at
        )
        try:
            return await self.kube.create(SECRETS, body)
        except AlreadyExists:
            existing = await self.kube.get(SECRETS, delivery.secret_name, delivery.namespace)
            labels = (existing or {}).get("metadata", {}).get("labels") or {}
            if existing is None or labels.get(c.LABEL_GRANT_UID) != grant.metadata.uid:
                raise IssueError(
                    "delivery Secret",
                    f"Secret {delivery.namespace}/{delivery.secret_name} already exists and is not "
                    "this grant's: choose another spec.delivery.secretName",
                ) from None
            # Resumed issuance with a fresh token: replace the old one.
            body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            return await self.kube.replace(SECRETS, body)

    async def _record_issued(
        self,
        grant: TaskGrant,
        objects: list[CreatedObject],
        token_id: str | None,
        token_expiry: datetime | None,
    ) -> None:
        now = self.clock()
        ready = self._ready(grant, "True", c.REASON_ISSUED, "privilege is live", now)
        status: dict[str, Any] = {
            "objects": [o.to_wire() for o in objects],
            "issuedAt": format_time(now),
            "conditions": ready,
        }
        if token_id:
            status["tokenCredentialId"] = token_id
        if token_expiry:
            status["tokenExpiresAt"] = format_time(token_expiry)
        await self.kube.patch(TASK_GRANTS, grant.name, {"status": status}, grant.namespace, status=True)
        grant.status.objects = objects
        grant.status.token_credential_id = token_id

    @staticmethod
    def _ready(
        grant: TaskGrant, status: Literal["True", "False"], reason: str, message: str, now: datetime
    ) -> list[dict[str, Any]]:
        """The grant's conditions with Ready set the Kubernetes way (transition time kept if unchanged)."""
        conditions = set_condition(
            grant.status.conditions, c.COND_READY, status, reason, message, now, grant.metadata.generation
        )
        return [cond.to_wire() for cond in conditions]

    # -- teardown ----------------------------------------------------------------------------

    async def record_end(self, grant: TaskGrant, reason: str, message: str) -> None:
        """Write why the grant ends before anything is deleted, so a crash resumes with it."""
        conditions = self._ready(grant, "False", reason, message, self.clock())
        patch = {"status": {"endReason": message, "conditions": conditions}}
        try:
            await self.kube.patch(TASK_GRANTS, grant.name, patch, grant.namespace, status=True)
        except KubeError as err:
            if err.status != 404:
                raise

    async def cut_bindings(self, grant: TaskGrant) -> datetime:
        """Delete the RoleBindings recorded at issuance, by name and uid, before anything else.

        One call per binding and no list first: when many grants end in the same second, this
        is what keeps each one's privilege from outliving its expiresAt. `teardown` then
        finds anything else (by label) in DESIGN order.
        """
        for obj in grant.status.objects:
            if obj.kind == ROLE_BINDINGS.kind:
                await self.kube.delete(ROLE_BINDINGS, obj.name, obj.namespace, uid=obj.uid or None)
        return self.clock()

    async def teardown(self, grant: TaskGrant) -> datetime | None:
        """Delete every object of the grant in DESIGN order; returns when the binding went.

        Objects are found by the grant's record and by label, so neither a lost status
        write nor a removed label hides one. Deletes are uid-preconditioned.
        """
        binding_gone: datetime | None = None
        recorded: dict[tuple[str, str | None, str], str] = {
            (o.kind, o.namespace, o.name): o.uid for o in grant.status.objects
        }
        namespaces = {grant.namespace}
        if grant.spec.delivery is not None:
            namespaces.add(grant.spec.delivery.namespace)
        selector = manifests.grant_selector(grant.metadata.uid)
        for res in TEARDOWN_ORDER:
            targets = {key: uid for key, uid in recorded.items() if key[0] == res.kind}
            for namespace in sorted(namespaces):
                for obj in await self.kube.list(res, namespace, label_selector=selector):
                    meta = obj["metadata"]
                    targets[(res.kind, meta.get("namespace"), meta["name"])] = meta.get("uid", "")
            for (_, target_namespace, name), uid in targets.items():
                await self.kube.delete(res, name, target_namespace, uid=uid or None)
            if res is ROLE_BINDINGS:
                binding_gone = self.clock()
        return binding_gone

    async def delete_grant(self, grant: TaskGrant) -> None:
        """Delete the TaskGrant; its finalizer handler releases it after a last teardown."""
        await self.kube.delete(TASK_GRANTS, grant.name, grant.namespace, uid=grant.metadata.uid)

    async def remove(self, grant: TaskGrant) -> None:
        """Tear down everything of the grant, then the TaskGrant itself: one attempt."""
        await self.teardown(grant)
        await self.delete_grant(grant)

    async def remove_everything(self, grant: TaskGrant) -> None:
        """Roll back a failed issuance, retrying briefly.

        Raises:
            KubeError: still failing after the retries; the caller hands the grant to the
                revoker, which retries until it succeeds.
        """
        delay = 0.1
        for attempt in range(1, 6):
            try:
                await self.remove(grant)
                return
            except KubeError as err:
                log.warning("rollback of grant %s failed (attempt %d): %s", grant.name, attempt, err)
                if attempt == 5:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
