"""Issue a grant all-or-nothing; tear it down in the revocation order (docs/architecture.md).

Issuance creates the TaskGrant first (so a crash leaves a record to clean up from), then
the objects that carry the privilege, each labelled with the grant's uid and owned by it.
Any failure removes everything made so far. Teardown deletes by the grant's record *and*
by label (in the watch cache: no list, no read), RoleBinding first: authorisation stops
within milliseconds of that delete.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

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
from zsp_operator.engine.cache import ObjectCache
from zsp_operator.kube import AlreadyExists, Kube, KubeError
from zsp_operator.kube.resources import (
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    TASK_GRANTS,
    Resource,
)
from zsp_operator.kube.retry import pause
from zsp_operator.settings import Settings

log = logging.getLogger(__name__)
Body = dict[str, Any]

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


def created_object(res: Resource, body: dict[str, Any]) -> CreatedObject:
    """What a grant records of one object it created."""
    meta = body["metadata"]
    return CreatedObject(
        api_version=res.api_version,
        kind=res.kind,
        name=meta["name"],
        namespace=meta.get("namespace"),
        uid=meta.get("uid", ""),
    )


class GrantService:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        clock: Callable[[], datetime],
        cache: ObjectCache | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.cache = cache if cache is not None else ObjectCache()

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

        Objects that do not depend on each other are created at once (a RoleBinding may name
        a Role that is still being created: the operator holds `bind` on Roles), so issuance
        costs two or three round trips, not six. The grant's status is not written here:
        the caller writes it next (`record_issued`).

        Nothing is rolled back here: the caller first marks the grant as never live, so the
        watch events of its own deletions cannot read as outside events, then rolls back.
        """
        spec = grant.spec
        assert spec.identity is not None
        name = manifests.object_name(request)
        objects: list[CreatedObject] = []
        first: list[tuple[str, Resource, Awaitable[Body]]] = []
        if spec.mode == "ephemeral":
            sa = manifests.service_account(grant, spec.identity)
            first.append(("ServiceAccount", SERVICE_ACCOUNTS, self._ensure(SERVICE_ACCOUNTS, sa, grant)))
        if spec.cluster_role:
            ref = manifests.role_ref("ClusterRole", spec.cluster_role)
        else:
            role = manifests.role(grant, name, spec.rules)
            first.append(("Role", ROLES, self._ensure(ROLES, role, grant)))
            ref = manifests.role_ref("Role", name)
        binding = manifests.role_binding(grant, name, ref, spec.identity)
        first.append(("RoleBinding", ROLE_BINDINGS, self._ensure(ROLE_BINDINGS, binding, grant)))
        await _all_or_step(first, objects, grant)
        token_id = token_expiry = None
        if spec.mode == "ephemeral":
            step = "TokenRequest"
            try:
                token, token_id, token_expiry = await self._request_token(spec.identity)
                step = "delivery Secret"
                secret = await self._deliver(grant, token)
            except (KubeError, IssueError, ValueError) as err:
                raise _step_failed(step, err, grant) from err
            objects.append(created_object(SECRETS, secret))
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
            created = await self.kube.create(res, body)
            self.cache.put(res, created)  # ours before its watch event says so
            return created
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
            # Resumed issuance with a fresh token: replace the old one, only in our own Secret.
            # (The operator never reads Secrets: the patch's test is the ownership check.)
            encoded = base64.b64encode(config.encode()).decode()
            fresh = {"op": "add", "path": _pointer("data", c.DELIVERY_KEY), "value": encoded}
            try:
                return await self.kube.patch(
                    SECRETS, delivery.secret_name, _if_owned_by(grant, fresh), delivery.namespace
                )
            except KubeError as err:
                if err.status != 422:
                    raise
                raise IssueError(
                    "delivery Secret",
                    f"Secret {delivery.namespace}/{delivery.secret_name} already exists and is not "
                    "this grant's: choose another spec.delivery.secretName",
                ) from None

    async def record_issued(self, issued: Issued) -> None:
        """The TaskGrant records what was created for it and that it is live (raises IssueError).

        Part of issuance: a grant whose record cannot be written is rolled back like any other.
        """
        try:
            await self._record_issued(issued)
        except KubeError as err:
            raise _step_failed("TaskGrant status", err, issued.grant) from err

    async def _record_issued(self, issued: Issued) -> None:
        grant, objects = issued.grant, list(issued.objects)
        token_id, token_expiry = issued.token_credential_id, issued.token_expires_at
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
        written = await self.kube.patch(
            TASK_GRANTS, grant.name, {"status": status}, grant.namespace, status=True
        )
        grant.status.objects = objects
        grant.status.token_credential_id = token_id
        # The view keeps it at this version: the watch events of earlier ones may follow.
        grant.metadata.resource_version = written.get("metadata", {}).get("resourceVersion")

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

    def _targets(self, grant: TaskGrant, res: Resource) -> dict[tuple[str | None, str], str]:
        """The grant's objects of one kind, by the grant's record *and* by label in the cache.

        Neither a lost status write (a crash mid-issuance) nor a removed label hides one.
        """
        targets = {(o.namespace, o.name): o.uid for o in grant.status.objects if o.kind == res.kind}
        if res is not SECRETS:
            for body in self.cache.of_grant(res, grant.metadata.uid):
                meta = body["metadata"]
                targets.setdefault((meta.get("namespace"), meta["name"]), meta.get("uid", ""))
        return targets

    async def _delete(self, res: Resource, namespace: str | None, name: str, uid: str) -> bool:
        removed = await self.kube.delete(res, name, namespace, uid=uid or None)
        if res is not SECRETS:
            self.cache.drop(res, namespace, name, uid or None)
        return removed

    async def cut_bindings(self, grant: TaskGrant) -> datetime:
        """Delete the grant's RoleBindings, by name and uid, before anything else.

        One call per binding, no read first: when many grants end in the same second, this
        is what keeps each one's privilege from outliving its expiresAt.
        """
        for (namespace, name), uid in self._targets(grant, ROLE_BINDINGS).items():
            await self._delete(ROLE_BINDINGS, namespace, name, uid)
        return self.clock()

    async def teardown(self, grant: TaskGrant, *, bindings_cut: bool = False) -> datetime | None:
        """Delete every object of the grant in the revocation order; returns when the bindings went.

        `bindings_cut`: `cut_bindings` already removed them (a second delete would only 404).
        """
        binding_gone: datetime | None = None
        for res in TEARDOWN_ORDER:
            if bindings_cut and res is ROLE_BINDINGS:
                continue
            for (namespace, name), uid in self._targets(grant, res).items():
                await self._delete(res, namespace, name, uid)
            if res is ROLE_BINDINGS:
                binding_gone = self.clock()
        await self._unrecorded_secret(grant)
        return binding_gone

    async def _unrecorded_secret(self, grant: TaskGrant) -> None:
        """A delivery Secret created just before a crash, before the grant recorded it.

        The operator never reads Secrets, so it asks the API server to confirm the Secret is
        this grant's (a JSON patch whose test fails otherwise) and learns its uid from the
        answer, then deletes exactly that object.
        """
        delivery = grant.spec.delivery
        if delivery is None or any(o.kind == SECRETS.kind for o in grant.status.objects):
            return
        try:
            ending = {"op": "add", "path": _pointer("metadata", "annotations", c.ANNOTATION_ENDING), "value": "true"}
            marked = await self.kube.patch(
                SECRETS, delivery.secret_name, _if_owned_by(grant, ending), delivery.namespace
            )
        except KubeError as err:
            if err.status in (404, 422):
                return  # never created, or not this grant's
            raise
        await self._delete(SECRETS, delivery.namespace, delivery.secret_name, marked["metadata"]["uid"])

    async def end_grant(self, grant: TaskGrant) -> None:
        """Mark the TaskGrant for deletion; its finalizer keeps it until `release`.

        From here a restart finds the grant ending (deletionTimestamp) and finishes it.
        """
        answer = await self.kube.delete_returning(
            TASK_GRANTS, grant.name, grant.namespace, uid=grant.metadata.uid
        )
        if answer is not None and answer.get("kind") == TASK_GRANTS.kind:
            grant.metadata.finalizers = list((answer.get("metadata") or {}).get("finalizers") or [])

    async def release(self, grant: TaskGrant) -> None:
        """Remove the operator's finalizer: the TaskGrant goes, and with it the record of the grant."""
        finalizers = grant.metadata.finalizers or [c.FINALIZER]
        for _ in range(3):
            if c.FINALIZER not in finalizers:
                return
            at = finalizers.index(c.FINALIZER)
            path = f"/metadata/finalizers/{at}"
            # The uid test keeps a same-named grant that replaced this one from losing its finalizer.
            ops = [
                {"op": "test", "path": "/metadata/uid", "value": grant.metadata.uid},
                {"op": "test", "path": path, "value": c.FINALIZER},
                {"op": "remove", "path": path},
            ]
            try:
                await self.kube.patch(TASK_GRANTS, grant.name, ops, grant.namespace)
                return
            except KubeError as err:
                if err.status == 404:
                    return
                if err.status != 422:
                    raise
            # The list changed under us (another finalizer came or went): read it once more.
            current = await self.kube.get(TASK_GRANTS, grant.name, grant.namespace)
            if current is None or current["metadata"].get("uid") != grant.metadata.uid:
                return
            finalizers = list(current["metadata"].get("finalizers") or [])
        raise KubeError(409, "Conflict", f"the finalizers of TaskGrant {grant.name} kept changing")

    async def remove(self, grant: TaskGrant) -> None:
        """Tear down everything of the grant, then the TaskGrant itself: one attempt."""
        await self.teardown(grant)
        await self.end_grant(grant)
        await self.release(grant)

    async def remove_everything(self, grant: TaskGrant) -> None:
        """Roll back a failed issuance, retrying briefly.

        Raises:
            KubeError: still failing after the retries; the caller hands the grant to the
                revoker, which retries until it succeeds.
        """
        for attempt in range(1, 6):
            try:
                await self.remove(grant)
                return
            except KubeError as err:
                log.warning("rollback of grant %s failed (attempt %d): %s", grant.name, attempt, err)
                if attempt == 5:
                    raise
                await pause(attempt - 1)  # never the permanent step: privilege may be at stake


def _step_failed(step: str, err: Exception, grant: TaskGrant) -> IssueError:
    message = err.message if isinstance(err, KubeError | IssueError) else str(err)
    return IssueError(step, f"creating the {step} failed: {message}", grant.metadata.uid)


async def _all_or_step(
    steps: list[tuple[str, Resource, Awaitable[Body]]], objects: list[CreatedObject], grant: TaskGrant
) -> None:
    """Run independent creations at once; record every success, raise for the first failure."""
    results = await asyncio.gather(*(create for _, _, create in steps), return_exceptions=True)
    failed: IssueError | None = None
    for (step, res, _), result in zip(steps, results, strict=True):
        if isinstance(result, KubeError | IssueError | ValueError):
            failed = failed or _step_failed(step, result, grant)
        elif isinstance(result, BaseException):
            raise result
        else:
            objects.append(created_object(res, result))
    if failed is not None:
        raise failed


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) to a member whose names may hold '/' or '~'."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _if_owned_by(grant: TaskGrant, *ops: dict[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch that applies only to an object labelled with this grant's uid (422 otherwise)."""
    test = {"op": "test", "path": _pointer("metadata", "labels", c.LABEL_GRANT_UID), "value": grant.metadata.uid}
    return [test, *ops]
