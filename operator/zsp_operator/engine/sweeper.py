"""The standing-privilege reconciler: no binding lives without a live grant.

Reacts to RoleBinding, ClusterRoleBinding, Role, Namespace and TaskGrant watch events (kopf
handlers call in here) and sweeps everything at start and every `settings.resync`, so
whatever a watch missed is caught. `core.bindings.classify` decides; this module only deletes
and reports.

Between resyncs every judgement comes from the watch cache and the operator's view, which
the operator's own writes update before their watch events arrive. Deleting is the one
thing here that cannot be undone, so a delete carries the judged binding's uid and
resourceVersion as preconditions: a binding changed since it was judged is not deleted,
and its own watch event has it judged again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import ChainMap
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core.bindings import (
    CLUSTER_ROLE_BINDING,
    Action,
    Binding,
    RoleKey,
    State,
    SweepContext,
    Verdict,
    break_glass_requesters,
    classify,
    grant_is_live,
    parse_binding,
    role_needed,
)
from zsp_operator.core.lifecycle import recorded_end
from zsp_operator.core.models import TaskGrant
from zsp_operator.core.standing_report import index_grants, index_roles
from zsp_operator.engine.cache import ObjectCache, key_of, slim
from zsp_operator.engine.informer import PAGE
from zsp_operator.engine.view import ClusterView
from zsp_operator.kube import Conflict, Kube, KubeError
from zsp_operator.kube.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    TASK_GRANTS,
    Resource,
)
from zsp_operator.kube.retry import pause
from zsp_operator.observe.observer import Observer
from zsp_operator.settings import Settings

log = logging.getLogger(__name__)
Body = dict[str, Any]
Revoke = Callable[[TaskGrant, str, str], object]


def _resource(binding: Binding) -> Resource:
    return CLUSTER_ROLE_BINDINGS if binding.kind == CLUSTER_ROLE_BINDING else ROLE_BINDINGS


def _with_kind(body: Mapping[str, Any], res: Resource) -> Body:
    # Watch events and list items may come without apiVersion/kind; the binding's kind matters.
    return {**body, "apiVersion": res.api_version, "kind": res.kind}


class Sweeper:
    """Keeps bindings honest; one per operator instance."""

    def __init__(
        self,
        kube: Kube,
        observer: Observer,
        settings: Settings,
        view: ClusterView,
        revoke: Revoke,
        operator: str | None = None,
        cache: ObjectCache | None = None,
    ) -> None:
        self.kube = kube
        self.cache = cache if cache is not None else ObjectCache()
        self.observer = observer
        self.settings = settings
        self.view = view
        self.revoke = revoke
        self.operator = operator
        self._labels: dict[str, dict[str, str]] = {}  # namespace labels, as this sweeper last saw them
        self._reported: dict[str, str] = {}  # binding uid -> resourceVersion already reported
        self._resync: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._resync is not None

    @property
    def mode(self) -> str:
        return self.settings.sweep_mode.value

    # -- start, stop, full sweep ------------------------------------------------------------

    async def start(self) -> None:
        """Sweep everything once, then again every `settings.resync`."""
        await self.sweep_all()
        self._resync = asyncio.create_task(self._resync_forever(), name="zsp-sweep-resync")

    def start_soon(self, operator: str | None) -> None:
        """Like `start`, with the first sweep in the background too.

        The operator's watches (and with them every other reaction) begin only once its
        start-up is done; at ten thousand grants a full first sweep would hold them back.
        `operator` is the operator's own username, known once it asked the API server: the
        sweeper spares the operator's own bindings.
        """
        self.operator = operator
        self._resync = asyncio.create_task(self._sweep_forever(first=True), name="zsp-sweep-resync")

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync

    async def _resync_forever(self) -> None:
        await self._sweep_forever(first=False)

    async def _sweep_forever(self, *, first: bool) -> None:
        interval = max(self.settings.resync.total_seconds(), 1.0)
        failures = 0
        while True:
            if not first:
                # After a failure, sooner than the next resync: the one retry policy, capped by it.
                await (pause(failures - 1, cap=interval) if failures else asyncio.sleep(interval))
            first = False
            try:
                await self.sweep_all()
                failures = 0
            except KubeError as err:
                self.observer.error("sweep")
                failures += 1
                log.error("standing-privilege sweep failed (attempt %d), retrying: %s", failures, err)

    async def sweep_all(self) -> None:
        """Classify every binding from one fresh listing of everything."""
        # Bindings are listed before the grants: any grant a listed binding belongs to
        # already existed, so a binding issued meanwhile is never mistaken for an orphan.
        # ClusterRoleBindings are few, and their listing opens every sweep (the stories watch for it).
        bindings = [slim(CLUSTER_ROLE_BINDINGS, b) for b in await self.kube.list(CLUSTER_ROLE_BINDINGS)]
        namespaces: list[str | None] = [*self.settings.namespaces] or [None]
        for namespace in namespaces:
            bindings += await self._listing(ROLE_BINDINGS, namespace)
        role_list = await self._listing(ROLES)
        cluster_role_list = [slim(CLUSTER_ROLES, r) for r in await self.kube.list(CLUSTER_ROLES)]
        roles = index_roles(role_list, cluster_role_list)
        # The listings refresh the cache, without forgetting what they did not see: an object
        # the operator created after a listing began is in the cache and must stay there.
        for res, bodies in (
            (ROLE_BINDINGS, [b for b in bindings if b["kind"] == ROLE_BINDINGS.kind]),
            (CLUSTER_ROLE_BINDINGS, [b for b in bindings if b["kind"] == CLUSTER_ROLE_BINDINGS.kind]),
            (ROLES, role_list),
            (CLUSTER_ROLES, cluster_role_list),
        ):
            for body in bodies:
                self.cache.put(res, body)
        del role_list, cluster_role_list
        grants: dict[str, TaskGrant] = {}
        async for page, _ in self.kube.list_pages(TASK_GRANTS, limit=PAGE):
            grants.update(index_grants(page))
        self._labels = {
            ns["metadata"]["name"]: dict(ns["metadata"].get("labels") or {})
            for ns in await self.kube.list(NAMESPACES)
        }
        ctx = self._context(grants, roles)
        seen = set()
        for body in bindings:
            binding = parse_binding(body)
            seen.add(binding.uid)
            # One binding the API will not let us delete must not stop the sweep (or the start).
            await self._guarded(self._act_or_confirm(binding, classify(binding, ctx)))
        for uid in set(self._reported) - seen:
            del self._reported[uid]
        self.observer.swept(self.mode)

    async def _listing(self, res: Resource, namespace: str | None = None) -> list[Body]:
        """Every object of a kind there may be thousands of, a page at a time, each kept only as
        far as judging needs it (whole, ten thousand grants' Roles and bindings were a few
        hundred MB at once)."""
        kept: list[Body] = []
        async for page, _ in self.kube.list_pages(res, namespace, limit=PAGE):
            kept += [slim(res, body) for body in page]
        return kept

    # -- watch events -----------------------------------------------------------------------

    async def binding_event(self, res: Resource, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A RoleBinding or ClusterRoleBinding was listed, added, modified or deleted."""
        binding = parse_binding(_with_kind(body, res))
        if event_type == "DELETED":
            self._reported.pop(binding.uid, None)
            return
        await self._guarded(self._check(binding))

    async def role_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A Role changed: the bindings that use it are judged again (rules of a grant's Role)."""
        if event_type is None:
            return  # the initial listing: the start sweep has judged these already
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace") or ""
        managed = (meta.get("labels") or {}).get(c.LABEL_MANAGED_BY) == c.OPERATOR_NAME
        if not managed and not self._enforced(namespace):
            return
        await self._guarded(self._check_bindings(namespace, role=meta.get("name")))

    async def namespace_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A namespace newly labelled `zsp.dev/enforce: "true"` has its bindings judged at once."""
        meta = body.get("metadata") or {}
        name = meta.get("name") or ""
        if event_type == "DELETED":
            self._labels.pop(name, None)
            return
        was = self._enforced(name)
        self._labels[name] = dict(meta.get("labels") or {})
        if self._enforced(name) and not was:
            await self._guarded(self._check_bindings(name))

    async def grant_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A grant recorded its objects or vanished: its labelled bindings are judged afresh.

        A grant that is ending is left alone: the revoker deletes its binding itself. One
        deleted without its finalizer leaves its binding behind, which is removed here.
        """
        if event_type is None:
            return  # the initial listing: the start sweep has judged these already
        if event_type != "DELETED":
            try:
                if not grant_is_live(TaskGrant.model_validate(body)):
                    return
            except ValueError:
                return
        meta = body.get("metadata") or {}
        await self._guarded(
            self._check_bindings(meta.get("namespace") or "", grant_uid=meta.get("uid") or "")
        )

    async def _guarded(self, work: Awaitable[None]) -> None:
        """Run one reaction; API trouble is logged and left to the next resync."""
        try:
            await work
        except KubeError as err:
            self.observer.error("sweep")
            log.warning("standing-privilege check failed (the next resync retries): %s", err)

    async def _check_bindings(self, namespace: str, *, role: str | None = None, grant_uid: str = "") -> None:
        """Judge the cached RoleBindings of a namespace: all, those using `role`, or one grant's."""
        if grant_uid:
            found = [b for b in self.cache.of_grant(ROLE_BINDINGS, grant_uid) if key_of(b)[0] == namespace]
        elif role is not None:
            found = self.cache.bound_to_role(namespace, role)
        else:
            found = self.cache.in_namespace(ROLE_BINDINGS, namespace)
        for body in found:
            await self._check(parse_binding(body))

    # -- judging and acting -----------------------------------------------------------------

    def _enforced(self, namespace: str) -> bool:
        labels = (
            self._labels[namespace]
            if namespace in self._labels
            else self.view.namespace_labels.get(namespace)
        )
        return (labels or {}).get(c.LABEL_ENFORCE) == "true"

    def _context(self, grants: Mapping[str, TaskGrant], roles: Mapping[RoleKey, Any]) -> SweepContext:
        return SweepContext(
            grants=grants,
            roles=roles,
            # This sweeper's own record first: it may have seen a relabel the view has not.
            namespace_labels=ChainMap[str, dict[str, str]](self._labels, self.view.namespace_labels),
            mode=self.mode,
            allowlist=tuple(self.settings.sweep_allowlist),
            enforce_cluster_bindings=self.settings.enforce_cluster_bindings,
            operator=self.operator,
            break_glass=break_glass_requesters(self.view.policies.values()),
        )

    def _judge(self, binding: Binding) -> Verdict:
        """Classify from the operator's view of the grants and the cached role it depends on."""
        key = role_needed(binding, self._context(self.view.grants, {}))
        roles: dict[RoleKey, Any] = {}
        if key is not None:
            kind, namespace, name = key
            body = self.cache.get(ROLES if kind == "Role" else CLUSTER_ROLES, namespace or None, name)
            if body is not None:
                roles[key] = list(body.get("rules") or [])
        return classify(binding, self._context(self.view.grants, roles))

    async def _check(self, binding: Binding) -> None:
        await self._act(binding, self._judge(binding))

    async def _act_or_confirm(self, binding: Binding, verdict: Verdict) -> None:
        """A resync's verdicts are acted on at once, but for a deletion: that is judged again
        from the cache and the view, which may know of a grant issued since the listing."""
        if verdict.action is Action.DELETE:
            cached = self.cache.get(_resource(binding), binding.namespace or None, binding.name)
            if cached is None or cached["metadata"].get("uid") != binding.uid:
                return  # gone, or replaced by another object of that name (judged on its own event)
            binding = parse_binding(cached)
            verdict = self._judge(binding)
        await self._act(binding, verdict)

    async def _act(self, binding: Binding, verdict: Verdict) -> None:
        if verdict.action is Action.KEEP:
            self._reported.pop(binding.uid, None)
            return
        if verdict.action is Action.REPORT:
            if self._reported.get(binding.uid) == binding.resource_version:
                return  # this version was reported already: one Warning per finding, not per resync
            self._reported[binding.uid] = binding.resource_version
            log.warning("standing privilege: %s", verdict.message)
            await self.observer.standing_binding_found(binding, verdict, self.mode)
            return
        res = _resource(binding)
        try:
            removed = await self.kube.delete(
                res,
                binding.name,
                binding.namespace or None,
                uid=binding.uid,
                resource_version=binding.resource_version or None,
            )
        except Conflict:
            return  # changed since it was judged: its own watch event has it judged again
        self.cache.drop(res, binding.namespace or None, binding.name, binding.uid)
        self._reported.pop(binding.uid, None)
        if verdict.revoke and verdict.grant is not None:
            self._revoke(verdict.grant, verdict)
        # A binding whose grant exists but has ended is a revocation in flight, not standing
        # privilege: it goes all the same, and the revocation reports itself.
        in_flight = verdict.state is State.ORPHANED and verdict.grant is not None
        if removed and not in_flight:
            log.warning("removed %s: %s", binding, verdict.message)
            await self.observer.standing_binding_removed(binding, verdict, self.mode)

    def _revoke(self, grant: TaskGrant, verdict: Verdict) -> None:
        if verdict.state is State.TAMPERED:
            self.revoke(grant, c.REASON_REVOKED, verdict.message)
            return
        # An ended grant whose teardown never finished (a crash after its end was recorded):
        # finish it with the reason it already carries.
        ended = recorded_end(grant.status.conditions)
        if ended is None:
            self.revoke(grant, c.REASON_REVOKED, verdict.message)
        else:
            self.revoke(grant, ended.reason, ended.message)
