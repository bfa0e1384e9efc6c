"""The table of served kinds and the discovery documents built from it.

Adding a built-in kind is one `_kind(...)` line in `BUILTINS`. Custom resources are
added and removed at run time from CustomResourceDefinitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from zsp_operator.sim.errors import GroupResource

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    """One served resource (plural) of one group/version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "token", "finalize"
    verbs: tuple[str, ...] = STANDARD_VERBS
    has_generation: bool = False
    # What DELETE does by default to dependents; batch/v1 Jobs still orphan their Pods.
    default_propagation: str = "Background"
    # Pods, namespaces and custom resources answer DELETE with the object, others with a Status.
    returns_deleted_object: bool = False
    custom: bool = False
    # CRD version entry (schema, printer columns); None for built-ins.
    crd_version: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def group_resource(self) -> GroupResource:
        return GroupResource(self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are stored once per (group, plural), whatever version reads them."""
        return (self.group, self.plural)


def _kind(
    api_version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    **extra: Any,
) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return ResourceType(group, version, plural, kind, namespaced, short, subresources=sub, **extra)


_ALL = ("all",)
_RBAC = "rbac.authorization.k8s.io/v1"
_ADMISSION = "admissionregistration.k8s.io/v1"
_FLOWCONTROL = "flowcontrol.apiserver.k8s.io/v1"

BUILTINS: tuple[ResourceType, ...] = (
    _kind(
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short=("ns",),
        sub=("status", "finalize"),
        returns_deleted_object=True,
    ),
    _kind("v1", "serviceaccounts", "ServiceAccount", short=("sa",), sub=("token",)),
    _kind("v1", "secrets", "Secret"),
    _kind("v1", "configmaps", "ConfigMap", short=("cm",)),
    _kind("v1", "services", "Service", short=("svc",), sub=("status",), categories=_ALL),
    _kind(
        "v1",
        "pods",
        "Pod",
        short=("po",),
        sub=("status",),
        categories=_ALL,
        has_generation=True,
        returns_deleted_object=True,
    ),
    _kind("v1", "events", "Event", short=("ev",)),
    _kind("discovery.k8s.io/v1", "endpointslices", "EndpointSlice"),
    _kind("events.k8s.io/v1", "events", "Event", short=("ev",)),
    _kind(
        "apps/v1",
        "deployments",
        "Deployment",
        short=("deploy",),
        sub=("status",),
        categories=_ALL,
        has_generation=True,
    ),
    _kind(
        "apps/v1",
        "replicasets",
        "ReplicaSet",
        short=("rs",),
        sub=("status",),
        categories=_ALL,
        has_generation=True,
    ),
    _kind(
        "batch/v1",
        "jobs",
        "Job",
        sub=("status",),
        categories=_ALL,
        has_generation=True,
        default_propagation="Orphan",
    ),
    _kind(_RBAC, "roles", "Role"),
    _kind(_RBAC, "rolebindings", "RoleBinding"),
    _kind(_RBAC, "clusterroles", "ClusterRole", namespaced=False),
    _kind(_RBAC, "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _kind(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        sub=("status",),
        has_generation=True,
        categories=("api-extensions",),
    ),
    _kind(
        _ADMISSION,
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        namespaced=False,
        has_generation=True,
        categories=("api-extensions",),
    ),
    _kind(
        _ADMISSION,
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        namespaced=False,
        has_generation=True,
        categories=("api-extensions",),
    ),
    _kind(
        "authorization.k8s.io/v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        namespaced=False,
        verbs=CREATE_ONLY,
    ),
    _kind(
        "authorization.k8s.io/v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        namespaced=False,
        verbs=CREATE_ONLY,
    ),
    _kind(
        "authorization.k8s.io/v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", verbs=CREATE_ONLY
    ),
    _kind("authentication.k8s.io/v1", "tokenreviews", "TokenReview", namespaced=False, verbs=CREATE_ONLY),
    _kind(
        "authentication.k8s.io/v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        namespaced=False,
        verbs=CREATE_ONLY,
    ),
    _kind("coordination.k8s.io/v1", "leases", "Lease"),
    _kind(
        _FLOWCONTROL,
        "flowschemas",
        "FlowSchema",
        namespaced=False,
        sub=("status",),
        has_generation=True,
    ),
    _kind(
        _FLOWCONTROL,
        "prioritylevelconfigurations",
        "PriorityLevelConfiguration",
        namespaced=False,
        sub=("status",),
        has_generation=True,
    ),
)

# Subresources that are objects of another kind, for discovery.
_SUBRESOURCE_KINDS = {"token": ("TokenRequest", "authentication.k8s.io", "v1", CREATE_ONLY)}


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of a CustomResourceDefinition."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    types = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = tuple(sorted((version.get("subresources") or {}).keys()))
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subresources,
                has_generation=True,
                returns_deleted_object=True,
                custom=True,
                crd_version=version,
            )
        )
    return types


class Registry:
    """The served kinds, looked up by group/version/plural or by kind."""

    def __init__(self, builtins: Iterable[ResourceType] = BUILTINS) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}  # CRD name -> its types
        for rtype in builtins:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rtype in self._types.values():
            if rtype.api_version == api_version and rtype.kind == kind:
                return rtype
        return None

    def any_version(self, group: str, plural: str) -> ResourceType | None:
        """A served type of this group/plural (the first version); None if not served."""
        for rtype in self._types.values():
            if rtype.group == group and rtype.plural == plural:
                return rtype
        return None

    def serve_crd(self, crd: dict[str, Any]) -> None:
        self.stop_serving_crd(crd["metadata"]["name"])
        types = types_from_crd(crd)
        for rtype in types:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype
        self._crd_types[crd["metadata"]["name"]] = types

    def stop_serving_crd(self, name: str) -> None:
        for rtype in self._crd_types.pop(name, []):
            self._types.pop((rtype.group, rtype.version, rtype.plural), None)

    # --- discovery ----------------------------------------------------------------------------

    def group_versions(self) -> dict[str, list[str]]:
        """Group -> its versions, preferred (first defined) first; the core group is ""."""
        found: dict[str, list[str]] = {}
        for rtype in self._types.values():
            versions = found.setdefault(rtype.group, [])
            if rtype.version not in versions:
                versions.append(rtype.version)
        return found

    def api_versions(self, server_address: str) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.group_versions().get(group)
        if not group or not versions:
            return None
        entries = [{"groupVersion": f"{group}/{version}", "version": version} for version in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def api_group_list(self) -> dict[str, Any]:
        groups = [self.api_group(group) for group in self.group_versions() if group]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        types = [t for t in self._types.values() if (t.group, t.version) == (group, version)]
        if not types:
            return None
        resources: list[dict[str, Any]] = []
        for rtype in sorted(types, key=lambda t: t.plural):
            entry: dict[str, Any] = {
                "name": rtype.plural,
                "singularName": rtype.singular,
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": list(rtype.verbs),
            }
            if rtype.short_names:
                entry["shortNames"] = list(rtype.short_names)
            if rtype.categories:
                entry["categories"] = list(rtype.categories)
            resources.append(entry)
            for sub in rtype.subresources:
                resources.append(_subresource_entry(rtype, sub))
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }


def _subresource_entry(rtype: ResourceType, sub: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"{rtype.plural}/{sub}",
        "singularName": "",
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(STATUS_VERBS if sub == "status" else ("update",)),
    }
    if sub in _SUBRESOURCE_KINDS:
        kind, group, version, verbs = _SUBRESOURCE_KINDS[sub]
        entry.update(kind=kind, group=group, version=version, verbs=list(verbs))
    return entry


def with_version(rtype: ResourceType, version: str) -> ResourceType:
    return replace(rtype, version=version)
