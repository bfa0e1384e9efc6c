"""The API resources the operator touches, as (group, version, plural, scope) descriptors."""

from __future__ import annotations

from dataclasses import dataclass

from zsp_operator.core import constants as c


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        """The REST path of the collection, or of one object (and its subresource)."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            root += f"/namespaces/{namespace}"
        path = f"{root}/{self.plural}"
        if name:
            path += f"/{name}"
            if sub:
                path += f"/{sub}"
        return path


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
SECRETS = Resource("", "v1", "secrets", "Secret")
EVENTS = Resource("", "v1", "events", "Event")
PODS = Resource("", "v1", "pods", "Pod")
JOBS = Resource("batch", "v1", "jobs", "Job")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False)
CLUSTER_ROLE_BINDINGS = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
)
SELF_SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False
)
MUTATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    False,
)
VALIDATING_WEBHOOKS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    False,
)
ACCESS_POLICIES = Resource(c.GROUP, c.VERSION, c.PLURAL_POLICY, c.KIND_POLICY, namespaced=False)
ACCESS_REQUESTS = Resource(c.GROUP, c.VERSION, c.PLURAL_REQUEST, c.KIND_REQUEST)
TASK_GRANTS = Resource(c.GROUP, c.VERSION, c.PLURAL_GRANT, c.KIND_GRANT)

BY_KIND = {
    r.kind: r
    for r in (
        NAMESPACES,
        SERVICE_ACCOUNTS,
        SECRETS,
        PODS,
        JOBS,
        ROLES,
        ROLE_BINDINGS,
        CLUSTER_ROLES,
        CLUSTER_ROLE_BINDINGS,
        ACCESS_POLICIES,
        ACCESS_REQUESTS,
        TASK_GRANTS,
    )
}


def resource_for(api_version: str, kind: str, plural: str | None = None) -> Resource:
    """A descriptor for any kind; unknown kinds get the conventional lower-case plural."""
    known = BY_KIND.get(kind)
    if known is not None and known.api_version == api_version:
        return known
    group, _, version = api_version.rpartition("/")
    return Resource(group, version, plural or f"{kind.lower()}s", kind)
