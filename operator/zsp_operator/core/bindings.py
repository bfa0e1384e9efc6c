"""Classify one RoleBinding or ClusterRoleBinding: keep it, report it, or delete it. No I/O.

A binding carrying the operator's labels is trusted only if it is exactly what a live
TaskGrant issued: the grant's own RoleBinding, with the subject and roleRef it recorded,
pointing at a Role whose rules are still the grant's. Anything else with those labels is
removed, whatever the mode. A binding without them is standing privilege when it sits in a
namespace labelled `zsp.dev/enforce: "true"` (or is a ClusterRoleBinding): reported in
`audit` mode, deleted in `enforce` mode unless it is allowlisted.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from zsp_operator.core import constants as c
from zsp_operator.core.models import AccessPolicy, SubjectKind, TaskGrant

ROLE_BINDING = "RoleBinding"
CLUSTER_ROLE_BINDING = "ClusterRoleBinding"

# Bootstrap RBAC (`kubernetes.io/bootstrapping: rbac-defaults`) lives cluster-wide or in
# these namespaces; the label anywhere else is just a label anyone could have written.
_BOOTSTRAP_LABEL = ("kubernetes.io/bootstrapping", "rbac-defaults")
_BOOTSTRAP_NAMESPACES = frozenset({"kube-system", "kube-public"})
_CONTROL_PLANE_NAMESPACE = "kube-system"
_SA_USER_PREFIX = "system:serviceaccount:"
# `system:` groups that contain workloads and people, so binding them is real privilege.
_BROAD_GROUPS = frozenset({"system:authenticated", "system:unauthenticated", "system:serviceaccounts"})
_BROAD_GROUP_PREFIX = "system:serviceaccounts:"
_RULE_FIELDS = ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")


class Action(StrEnum):
    KEEP = "keep"
    REPORT = "report"
    DELETE = "delete"


class State(StrEnum):
    """What a binding is, as far as zero standing privilege is concerned."""

    GRANTED = "granted"  # the binding of a live grant, as issued
    ORPHANED = "orphaned"  # operator labels, but its grant is gone or has ended
    TAMPERED = "tampered"  # the grant's own binding or Role changed after issuance
    FORGED = "forged"  # operator labels on a binding the grant did not create
    UNVERIFIED = "unverified"  # operator labels, but the grants could not be read (audit only)
    STANDING = "standing"  # no operator labels: privilege without a grant
    SYSTEM = "system"  # the control plane's own
    OPERATOR = "operator"  # the operator's own identity
    ALLOWLISTED = "allowlisted"  # named in the operator's configuration
    BREAK_GLASS = "break-glass"  # lets a break-glass policy's requesters ask for access
    NOT_ENFORCED = "not-enforced"  # unmanaged, in a namespace the sweeper does not enforce
    EMPTY = "empty"  # unmanaged and binds no one: it grants nothing


# States of bindings that carry the operator's labels without a live grant behind them.
UNTRUSTED_MANAGED = frozenset({State.ORPHANED, State.TAMPERED, State.FORGED})


@dataclass(frozen=True, order=True)
class SubjectRef:
    """A binding subject; ServiceAccounts carry their namespace, Users and Groups none."""

    kind: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class RoleRef:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


# (kind, namespace or "", name) of a Role or ClusterRole.
RoleKey = tuple[str, str, str]
# Raw PolicyRule dicts of each role that exists; a key not in it means the role is missing.
Roles = Mapping[RoleKey, Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class Binding:
    """The parts of a RoleBinding or ClusterRoleBinding the sweeper reads."""

    kind: str
    name: str
    namespace: str  # "" for a ClusterRoleBinding
    uid: str
    resource_version: str
    labels: Mapping[str, str]
    role_ref: RoleRef
    subjects: tuple[SubjectRef, ...]

    @property
    def cluster_wide(self) -> bool:
        return self.kind == CLUSTER_ROLE_BINDING

    @property
    def role_key(self) -> RoleKey:
        namespace = self.namespace if self.role_ref.kind == "Role" else ""
        return (self.role_ref.kind, namespace, self.role_ref.name)

    @property
    def managed(self) -> bool:
        """Claims to be the operator's: either of its identifying labels is enough to be checked."""
        return self.labels.get(c.LABEL_MANAGED_BY) == c.OPERATOR_NAME or c.LABEL_GRANT_UID in self.labels

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def parse_binding(body: Mapping[str, Any]) -> Binding:
    """A Binding from an API object; ServiceAccount subjects default to the binding's namespace."""
    meta = body.get("metadata") or {}
    kind = str(body.get("kind") or (CLUSTER_ROLE_BINDING if not meta.get("namespace") else ROLE_BINDING))
    namespace = str(meta.get("namespace") or "") if kind == ROLE_BINDING else ""
    ref = body.get("roleRef") or {}
    subjects = []
    for raw in body.get("subjects") or []:
        sub_kind = str(raw.get("kind") or "")
        sub_ns = str(raw.get("namespace") or namespace) if sub_kind == SubjectKind.SERVICE_ACCOUNT else ""
        subjects.append(SubjectRef(sub_kind, str(raw.get("name") or ""), sub_ns))
    return Binding(
        kind=kind,
        name=str(meta.get("name") or ""),
        namespace=namespace,
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        labels=dict(meta.get("labels") or {}),
        role_ref=RoleRef(str(ref.get("kind") or ""), str(ref.get("name") or "")),
        subjects=tuple(subjects),
    )


def role_key(kind: str, namespace: str | None, name: str) -> RoleKey:
    return (kind, (namespace or "") if kind == "Role" else "", name)


def rule_key(rule: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    """A PolicyRule dict in a canonical form: order within a field and empty fields don't matter."""
    return tuple(tuple(sorted(str(v) for v in rule.get(name) or ())) for name in _RULE_FIELDS)


def same_rules(a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]]) -> bool:
    """True if both rule lists grant the same, rule for rule (the order of rules aside)."""
    return sorted(map(rule_key, a)) == sorted(map(rule_key, b))


# --- who is who ------------------------------------------------------------------------------


def is_system_subject(subject: SubjectRef) -> bool:
    """The control plane's identities: `system:` users and groups, kube-system ServiceAccounts.

    Groups such as `system:authenticated` or `system:serviceaccounts:<ns>` contain workloads,
    so they are not system subjects: binding them is privilege like any other.
    """
    if subject.kind == SubjectKind.SERVICE_ACCOUNT:
        return subject.namespace == _CONTROL_PLANE_NAMESPACE
    if subject.kind == SubjectKind.GROUP:
        broad = subject.name in _BROAD_GROUPS or subject.name.startswith(_BROAD_GROUP_PREFIX)
        return subject.name.startswith("system:") and not broad
    if subject.name.startswith(_SA_USER_PREFIX):
        namespace = subject.name[len(_SA_USER_PREFIX) :].partition(":")[0]
        return namespace == _CONTROL_PLANE_NAMESPACE
    return subject.name.startswith("system:")


def is_system_binding(binding: Binding) -> bool:
    """Bootstrap RBAC of the API server, or a binding of system subjects alone."""
    key, value = _BOOTSTRAP_LABEL
    if binding.labels.get(key) == value and (
        binding.cluster_wide or binding.namespace in _BOOTSTRAP_NAMESPACES
    ):
        return True
    return bool(binding.subjects) and all(is_system_subject(s) for s in binding.subjects)


def subject_is_user(subject: SubjectRef, username: str) -> bool:
    """True if the API server would authenticate `username` as this subject."""
    if subject.kind == SubjectKind.SERVICE_ACCOUNT:
        return username == f"{_SA_USER_PREFIX}{subject.namespace}:{subject.name}"
    return subject.kind == SubjectKind.USER and subject.name == username


def allowlisted(binding: Binding, patterns: Iterable[str]) -> str | None:
    """The first allowlist entry naming this binding: `NS/NAME` or `NAME` (any namespace).

    Shell-style wildcards are allowed (`payments/*`, `zsp-requester-*`). A ClusterRoleBinding
    is named by `NAME` alone.
    """
    for pattern in patterns:
        namespace, slash, name = pattern.rpartition("/")
        if slash and (binding.cluster_wide or not fnmatch.fnmatchcase(binding.namespace, namespace)):
            continue
        if fnmatch.fnmatchcase(binding.name, name):
            return pattern
    return None


def break_glass_requesters(policies: Iterable[AccessPolicy]) -> frozenset[SubjectRef]:
    """Everyone a break-glass policy lets ask for access."""
    return frozenset(
        SubjectRef(s.kind.value, s.name, s.namespace or "")
        for p in policies
        if p.spec.break_glass
        for s in p.spec.requesters
    )


def _only_files_requests(rules: Sequence[Mapping[str, Any]]) -> bool:
    """True if the rules grant nothing but access to AccessRequests (the right to ask)."""
    return bool(rules) and all(
        list(rule.get("apiGroups") or []) == [c.GROUP]
        and set(rule.get("resources") or []) <= {c.PLURAL_REQUEST, f"{c.PLURAL_REQUEST}/status"}
        and rule.get("resources")
        and not rule.get("nonResourceURLs")
        for rule in rules
    )


# --- managed bindings ------------------------------------------------------------------------


def grant_is_live(grant: TaskGrant) -> bool:
    """Not being deleted and not ended: a grant whose Ready condition is False is being revoked."""
    if grant.metadata.deletion_timestamp is not None:
        return False
    return not any(cond.type == c.COND_READY and cond.status == "False" for cond in grant.status.conditions)


def _expected_role_ref(binding: Binding, grant: TaskGrant) -> RoleRef:
    if grant.spec.cluster_role:
        return RoleRef("ClusterRole", grant.spec.cluster_role)
    recorded = [o for o in grant.status.objects if o.kind == "Role"]
    # Issuance names the Role like its RoleBinding; before it records them, that is all we know.
    return RoleRef("Role", recorded[0].name if recorded else binding.name)


def _expected_subjects(grant: TaskGrant) -> tuple[SubjectRef, ...]:
    identity = grant.spec.identity
    if identity is None:
        return ()
    return (SubjectRef(SubjectKind.SERVICE_ACCOUNT.value, identity.name, identity.namespace),)


def _issuing(grant: TaskGrant) -> bool:
    """Issuance in progress: the grant has not recorded its objects yet."""
    return not any(o.kind == ROLE_BINDING for o in grant.status.objects)


def _is_the_grants_binding(binding: Binding, grant: TaskGrant) -> bool:
    if binding.cluster_wide or binding.namespace != grant.namespace:
        return False
    if _issuing(grant):
        return True
    recorded = [o for o in grant.status.objects if o.kind == ROLE_BINDING]
    return any(o.name == binding.name and (not o.uid or o.uid == binding.uid) for o in recorded)


@dataclass(frozen=True)
class ManagedCheck:
    state: State
    message: str
    grant: TaskGrant | None = None


def check_managed(binding: Binding, grants: Mapping[str, TaskGrant], roles: Roles) -> ManagedCheck:
    """Is this binding with the operator's labels exactly what a live grant issued?

    Parameters:
        grants: every known TaskGrant by uid (live or ending).
        roles: the rules of existing roles; must hold the binding's Role if it has one.
    """
    uid = binding.labels.get(c.LABEL_GRANT_UID, "")
    grant = grants.get(uid) if uid else None
    if grant is None:
        missing = f"its TaskGrant {uid} does not exist" if uid else "it names no TaskGrant"
        return ManagedCheck(State.ORPHANED, f"{binding} carries the operator's labels but {missing}")
    label = f"TaskGrant {grant.namespace}/{grant.name}"
    if not grant_is_live(grant):
        return ManagedCheck(State.ORPHANED, f"{binding} outlived {label}, which has ended", grant)
    if not _is_the_grants_binding(binding, grant):
        return ManagedCheck(
            State.FORGED, f"{binding} carries the labels of {label} but is not the binding it issued", grant
        )
    problems = []
    expected_subjects = _expected_subjects(grant)
    if sorted(set(binding.subjects)) != sorted(expected_subjects):
        found = ", ".join(map(str, binding.subjects)) or "none"
        wanted = ", ".join(map(str, expected_subjects)) or "none"
        problems.append(f"its subjects are {found}, not {wanted}")
    expected_ref = _expected_role_ref(binding, grant)
    if binding.role_ref != expected_ref:
        problems.append(f"its roleRef is {binding.role_ref}, not {expected_ref}")
    elif expected_ref.kind == "Role":
        rules = roles.get(binding.role_key)
        wire = [rule.to_wire() for rule in grant.spec.rules]
        if rules is None:
            # Mid-issuance the Role is created beside its binding and may not be seen yet:
            # the binding is judged again once the grant records both.
            if not _issuing(grant):
                problems.append(f"its Role {expected_ref.name} was deleted")
        elif not same_rules(rules, wire):
            problems.append(f"the rules of Role {expected_ref.name} were edited after issuance")
    if problems:
        return ManagedCheck(
            State.TAMPERED, f"{binding} of {label} was changed after issuance: {'; '.join(problems)}", grant
        )
    return ManagedCheck(State.GRANTED, f"{binding} is the binding of live {label}", grant)


# --- the verdict -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepContext:
    """What the classification depends on besides the binding itself."""

    grants: Mapping[str, TaskGrant]
    roles: Roles
    namespace_labels: Mapping[str, Mapping[str, str]]
    mode: str = "audit"  # "audit" reports standing bindings, "enforce" deletes them
    allowlist: Sequence[str] = ()
    enforce_cluster_bindings: bool = False
    operator: str | None = None  # the operator's own username
    break_glass: frozenset[SubjectRef] = field(default_factory=frozenset)

    def enforced(self, namespace: str) -> bool:
        return self.namespace_labels.get(namespace, {}).get(c.LABEL_ENFORCE) == "true"


@dataclass(frozen=True)
class Verdict:
    action: Action
    state: State
    message: str
    grant: TaskGrant | None = None  # the grant the binding belongs to or claims, if it exists
    revoke: bool = False  # the grant itself was tampered with: revoke it


def role_needed(binding: Binding, ctx: SweepContext) -> RoleKey | None:
    """The role `classify` will read for this binding (the caller must put it in ctx.roles)."""
    if binding.managed and binding.role_ref.kind == "Role":
        return binding.role_key
    if not binding.managed and (binding.cluster_wide or ctx.enforced(binding.namespace)):
        subjects = set(binding.subjects)
        if subjects and subjects <= ctx.break_glass:
            return binding.role_key
    return None


def classify(binding: Binding, ctx: SweepContext) -> Verdict:
    """Keep, report or delete one binding, and say why."""
    if is_system_binding(binding):
        return Verdict(Action.KEEP, State.SYSTEM, f"{binding} belongs to the control plane")
    if ctx.operator and any(subject_is_user(s, ctx.operator) for s in binding.subjects):
        if all(subject_is_user(s, ctx.operator) for s in binding.subjects):
            return Verdict(Action.KEEP, State.OPERATOR, f"{binding} is the operator's own")
        others = ", ".join(str(s) for s in binding.subjects if not subject_is_user(s, ctx.operator))
        # Deleting it would cut the operator off: a person has to take the others out.
        return Verdict(
            Action.REPORT,
            State.STANDING,
            f"{binding} binds the operator together with {others}: never deleted by the "
            "operator, remove those subjects by hand",
        )
    if binding.managed:
        check = check_managed(binding, ctx.grants, ctx.roles)
        if check.state is State.GRANTED:
            return Verdict(Action.KEEP, check.state, check.message, check.grant)
        # A tampered grant is revoked; an ended one whose binding survived has its teardown finished
        # (unless it is being deleted: its finalizer does that).
        revoke = check.state is State.TAMPERED or (
            check.state is State.ORPHANED
            and check.grant is not None
            and check.grant.metadata.deletion_timestamp is None
        )
        return Verdict(Action.DELETE, check.state, check.message, check.grant, revoke=revoke)
    return _classify_unmanaged(binding, ctx)


def _classify_unmanaged(binding: Binding, ctx: SweepContext) -> Verdict:
    if not binding.cluster_wide and not ctx.enforced(binding.namespace):
        return Verdict(Action.KEEP, State.NOT_ENFORCED, f"{binding} is in a namespace not enforced")
    if not binding.subjects:
        return Verdict(Action.KEEP, State.EMPTY, f"{binding} binds no one")
    entry = allowlisted(binding, ctx.allowlist)
    if entry is not None:
        return Verdict(Action.KEEP, State.ALLOWLISTED, f"{binding} is allowlisted by {entry!r}")
    subjects = set(binding.subjects)
    if subjects and subjects <= ctx.break_glass and _only_files_requests(ctx.roles.get(binding.role_key, ())):
        return Verdict(
            Action.KEEP,
            State.BREAK_GLASS,
            f"{binding} lets break-glass requesters file AccessRequests, nothing more",
        )
    whom = ", ".join(map(str, binding.subjects)) or "no subjects"
    message = f"{binding} binds {whom} to {binding.role_ref} without a grant: standing privilege"
    if binding.cluster_wide:
        delete = ctx.mode == "enforce" and ctx.enforce_cluster_bindings
    else:
        delete = ctx.mode == "enforce"
    return Verdict(Action.DELETE if delete else Action.REPORT, State.STANDING, message)
