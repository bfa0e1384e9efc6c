"""Create, read, update and patch with the API server's semantics.

uid, creationTimestamp, resourceVersion and generation bookkeeping, generateName,
status subresources, conflicts on stale resourceVersions, CRD schemas, admission
webhooks, RBAC escalation checks, Service ClusterIPs and dry runs. Deletion lives in
`deletion.py`.
"""

from __future__ import annotations

import builtins
import copy
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zsp_operator.sim import errors as E
from zsp_operator.sim.admission import Admission, AdmissionRequest
from zsp_operator.sim.auth import UserInfo
from zsp_operator.sim.authz import Authorizer
from zsp_operator.sim.escalation import check_escalation
from zsp_operator.sim.patch import apply_patch
from zsp_operator.sim.resources import Registry, ResourceType
from zsp_operator.sim.schema import apply_defaults, prune, validate_object, version_schema
from zsp_operator.sim.services import ClusterIPs, begin_service_write
from zsp_operator.sim.store import Obj, Store
from zsp_operator.sim.validation import apply_builtin_defaults, builtin_errors, finalizer_errors, name_errors

_SYSTEM_FIELDS = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "selfLink",
    "managedFields",
)
_GENERATE_ALPHABET = string.ascii_lowercase + string.digits
_MAX_RETRIES = 8


@dataclass
class RequestContext:
    """Per-request options shared by every write."""

    user: UserInfo
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict, Warn or Ignore
    warnings: list[str] = field(default_factory=list)


class _ChangedMeanwhile(Exception):
    """The object changed while admission webhooks ran; recompute and retry."""


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def present(rtype: ResourceType, obj: Obj) -> Obj:
    """The object as served by `rtype`'s group/version (custom resources keep one copy)."""
    obj["apiVersion"] = rtype.api_version
    obj["kind"] = rtype.kind
    return obj


def is_deleting(obj: Obj) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def blocks_removal(obj: Obj) -> bool:
    """Finalizers keep a deleted object; namespaces also wait for their spec.finalizers."""
    if obj["metadata"].get("finalizers"):
        return True
    return obj.get("kind") == "Namespace" and bool((obj.get("spec") or {}).get("finalizers"))


def _spec_part(obj: Obj, has_status: bool) -> Obj:
    skipped = {"metadata", "status"} if has_status else {"metadata"}
    return {k: v for k, v in obj.items() if k not in skipped | {"apiVersion", "kind"}}


class Objects:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        admission: Admission,
        authorizer: Authorizer,
        clock: Callable[[], float],
        cluster_ips: ClusterIPs | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.admission = admission
        self.authorizer = authorizer
        self.clock = clock
        self.cluster_ips = cluster_ips or ClusterIPs(store)

    # --- reads ------------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rtype.storage_key, namespace, name)
        if obj is None:
            raise E.not_found(rtype.group_resource, name)
        return present(rtype, obj)

    def list(self, rtype: ResourceType, namespace: str | None, matches: Callable[[Obj], bool]) -> Obj:
        items = [present(rtype, obj) for obj in self.store.list(rtype.storage_key, namespace) if matches(obj)]
        return {
            "apiVersion": rtype.api_version,
            "kind": f"{rtype.kind}List",
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": items,
        }

    # --- shared checks ----------------------------------------------------------------------

    def check_namespace(self, rtype: ResourceType, namespace: str, name: str, *, creating: bool) -> None:
        if not rtype.namespaced:
            return
        stored = self.store.get(("", "namespaces"), "", namespace)
        if stored is None:
            raise E.not_found(E.GroupResource("", "namespaces"), namespace)
        if creating and is_deleting(stored):
            why = f"unable to create new content in namespace {namespace} because it is being terminated"
            error = E.forbidden(rtype.group_resource, name, why)
            error.details["causes"] = [
                {"reason": "NamespaceTerminating", "message": why, "field": "metadata.namespace"}
            ]
            raise error

    def _check_type_meta(self, rtype: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise E.bad_request("the body of the request was in an unknown format")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != rtype.api_version:
            raise E.bad_request(
                f"the API version in the data ({api_version}) does not match the "
                f"expected API version ({rtype.api_version})"
            )
        if kind and kind != rtype.kind:
            raise E.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
            )
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {})
        return present(rtype, obj)

    def _crd_terminating(self, rtype: ResourceType) -> bool:
        if not rtype.custom:
            return False
        crd = self.store.get(
            ("apiextensions.k8s.io", "customresourcedefinitions"), "", f"{rtype.plural}.{rtype.group}"
        )
        return crd is not None and is_deleting(crd)

    def _schema(self, ctx: RequestContext, rtype: ResourceType, obj: Obj, *, report: bool) -> None:
        """Prune unknown fields (Strict: reject them) and apply defaults, in place."""
        schema = version_schema(rtype.crd_version)
        if schema is None:
            return
        dropped = prune(obj, schema)
        if dropped and report:
            if ctx.field_validation == "Strict":
                unknown = ", ".join(f'unknown field "{path}"' for path in dropped)
                raise E.bad_request(
                    f'{rtype.kind} in version "{rtype.version}" cannot be handled as a '
                    f"{rtype.kind}: strict decoding error: {unknown}"
                )
            if ctx.field_validation != "Ignore":
                ctx.warnings += [f'unknown field "{path}"' for path in dropped]
        apply_defaults(obj, schema)

    def _validate(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        found = name_errors(rtype, meta["name"]) if old is None else []
        found += builtin_errors(rtype, obj, old)
        if old is not None:
            found += finalizer_errors(old, obj)
        schema = version_schema(rtype.crd_version)
        if schema is not None:
            found += validate_object(obj, schema, old, found)
        if found:
            raise E.invalid_object(rtype.kind, rtype.group, meta.get("name", ""), found)

    def _allocate(
        self, rtype: ResourceType, obj: Obj, old: Obj | None, dry_run: bool, subresource: str
    ) -> builtins.list[str]:
        """What the server allocates before validating a write (a Service's ClusterIP), in
        place; the addresses held until the write is stored or fails (`release`)."""
        if rtype.group == "" and rtype.plural == "services" and not subresource:
            return begin_service_write(self.cluster_ips, obj, old, dry_run=dry_run)
        return []

    # --- create -----------------------------------------------------------------------------

    async def create(self, ctx: RequestContext, rtype: ResourceType, namespace: str, body: Any) -> Obj:
        obj = self._check_type_meta(rtype, body)
        meta = obj["metadata"]
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise E.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and not meta.get("generateName"):
            raise E.invalid_object(
                rtype.kind, rtype.group, "", [E.required("metadata.name", "name or generateName is required")]
            )
        self.check_namespace(rtype, namespace, meta.get("name", ""), creating=True)
        if self._crd_terminating(rtype):
            raise E.method_not_allowed("create not allowed while custom resource definition is terminating")
        for key in _SYSTEM_FIELDS:
            meta.pop(key, None)
        if rtype.has_status:
            obj.pop("status", None)
        self._prepare_create(rtype, obj)
        apply_builtin_defaults(rtype, obj)
        self._schema(ctx, rtype, obj, report=True)

        request = AdmissionRequest(
            rtype, "CREATE", meta.get("name", ""), namespace, ctx.user, obj, None, dry_run=ctx.dry_run
        )
        obj = await self.admission.mutate(request) or obj
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            meta["namespace"] = namespace
        self._schema(ctx, rtype, obj, report=False)
        if not meta.get("name"):
            suffix = "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(self.clock())
        if rtype.has_generation:
            meta["generation"] = 1
        held = self._allocate(rtype, obj, None, ctx.dry_run, "")
        try:
            self._validate(rtype, obj, None)
            check_escalation(self.authorizer, ctx.user, rtype, obj)
            request.obj, request.name = obj, meta["name"]
            await self.admission.validate(request)

            stored_in = namespace if rtype.namespaced else ""
            if self.store.get(rtype.storage_key, stored_in, meta["name"]) is not None:
                raise E.already_exists(rtype.group_resource, meta["name"])
            if ctx.dry_run:
                return present(rtype, obj)
            return present(rtype, self.store.put(rtype.storage_key, obj))
        finally:
            self.cluster_ips.release(held)

    def _prepare_create(self, rtype: ResourceType, obj: Obj) -> None:
        if rtype.group == "" and rtype.plural == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"].get(
                "name"
            )
        if rtype.group == "apiextensions.k8s.io":
            finalizers = obj["metadata"].setdefault("finalizers", [])
            if "customresourcecleanup.apiextensions.k8s.io" not in finalizers:
                finalizers.append("customresourcecleanup.apiextensions.k8s.io")

    # --- update and patch -------------------------------------------------------------------

    async def update(
        self,
        ctx: RequestContext,
        rtype: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str = "",
    ) -> Obj:
        obj = self._check_type_meta(rtype, body)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise E.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if rtype.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise E.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        precondition = meta.get("resourceVersion")
        for _ in range(_MAX_RETRIES):
            current = self.get(rtype, namespace, name)
            if precondition and precondition != current["metadata"]["resourceVersion"]:
                raise E.stale(rtype.group_resource, name)
            try:
                return await self._update(ctx, rtype, current, copy.deepcopy(obj), subresource)
            except _ChangedMeanwhile:
                if precondition:
                    raise E.stale(rtype.group_resource, name) from None
        raise E.stale(rtype.group_resource, name)

    async def patch(
        self,
        ctx: RequestContext,
        rtype: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str = "",
    ) -> Obj:
        for _ in range(_MAX_RETRIES):
            current = self.get(rtype, namespace, name)
            patched = present(rtype, apply_patch(current, content_type, patch, custom=rtype.custom))
            precondition = (patched.get("metadata") or {}).get("resourceVersion")
            if precondition and precondition != current["metadata"]["resourceVersion"]:
                raise E.stale(rtype.group_resource, name)
            if (patched.get("metadata") or {}).get("name", name) != name:
                raise E.bad_request(
                    f"the name of the object ({patched['metadata']['name']}) does not match "
                    f"the name on the URL ({name})"
                )
            try:
                return await self._update(ctx, rtype, current, patched, subresource)
            except _ChangedMeanwhile:
                continue
        raise E.stale(rtype.group_resource, name)

    async def _update(
        self, ctx: RequestContext, rtype: ResourceType, current: Obj, new: Obj, subresource: str
    ) -> Obj:
        new = self._merge_system_fields(rtype, current, new, subresource)
        apply_builtin_defaults(rtype, new)
        self._schema(ctx, rtype, new, report=True)
        meta = current["metadata"]
        request = AdmissionRequest(
            rtype,
            "UPDATE",
            meta["name"],
            meta.get("namespace", ""),
            ctx.user,
            new,
            current,
            subresource=subresource,
            dry_run=ctx.dry_run,
        )
        new = await self.admission.mutate(request) or new
        new = self._merge_system_fields(rtype, current, new, subresource)
        self._schema(ctx, rtype, new, report=False)
        held = self._allocate(rtype, new, current, ctx.dry_run, subresource)
        try:
            if rtype.has_generation and _spec_part(new, rtype.has_status) != _spec_part(
                current, rtype.has_status
            ):
                new["metadata"]["generation"] = int(meta.get("generation") or 0) + 1
            self._validate(rtype, new, current)
            check_escalation(self.authorizer, ctx.user, rtype, new)
            request.obj = new
            await self.admission.validate(request)

            latest = self.store.get(rtype.storage_key, meta.get("namespace", ""), meta["name"])
            if latest is None:
                raise E.not_found(rtype.group_resource, meta["name"])
            if latest["metadata"]["resourceVersion"] != meta["resourceVersion"]:
                raise _ChangedMeanwhile
            if new == current or ctx.dry_run:
                return new  # an update that changes nothing writes nothing and notifies no one
            return self.commit(rtype, new)
        finally:
            self.cluster_ips.release(held)

    def _merge_system_fields(self, rtype: ResourceType, current: Obj, new: Obj, subresource: str) -> Obj:
        """Keep what clients may not change: system metadata, and spec vs status per subresource."""
        new = present(rtype, copy.deepcopy(new))
        if subresource == "finalize":
            merged = copy.deepcopy(current)
            merged["spec"] = new.get("spec") or {}
            return merged
        if rtype.has_status and subresource == "status":
            merged = copy.deepcopy(current)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            return merged
        new_meta = new.setdefault("metadata", {})
        if new_meta.get("uid") and new_meta["uid"] != current["metadata"]["uid"]:
            raise E.conflict(
                rtype.group_resource,
                current["metadata"]["name"],
                f"Precondition failed: UID in precondition: {current['metadata']['uid']}, "
                f"UID in object meta: {new_meta['uid']}",
            )
        for key in ("name", "namespace", *_SYSTEM_FIELDS):
            if key in current["metadata"]:
                new_meta[key] = current["metadata"][key]
            else:
                new_meta.pop(key, None)
        if rtype.has_status:
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        if rtype.group == "" and rtype.plural == "namespaces":
            new["spec"] = current.get("spec", {})  # spec.finalizers change only via /finalize
        return new

    def commit(self, rtype: ResourceType, new: Obj) -> Obj:
        """Store an update; a deleted object whose last finalizer went is removed instead."""
        meta = new["metadata"]
        if is_deleting(new) and not blocks_removal(new):
            removed = self.store.remove(rtype.storage_key, meta.get("namespace", ""), meta["name"], new)
            return present(rtype, removed or new)
        return present(rtype, self.store.put(rtype.storage_key, new))

    def system_update(self, key: tuple[str, str], new: Obj) -> None:
        """A controller's write: no admission, no authorization, no conflict check."""
        rtype = self.registry.any_version(*key)
        if rtype is None:
            return
        current = self.store.get(key, new["metadata"].get("namespace", ""), new["metadata"]["name"])
        if current is None or current == new:
            return
        self.commit(rtype, new)
